{
  "targets": [
    {
      "target_name": "torchsight",
      "sources": [
        "native/addon.cpp", "native/process.cpp", "native/convert.cpp", "native/tensor.cpp", "native/ops.cpp", "native/indexing.cpp",
        "native/request.cpp", "native/interpreter.cpp", "native/autograd.cpp", "native/generate.cpp", "native/hook_ops.cpp",
        "native/site_graphs.cpp", "native/op_sites.cpp", "native/loader.cpp", "native/native_model.cpp", "native/scan.cpp", "native/meta_kernels.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native",
        "<!@(node scripts/torch-paths.mjs include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GLIBCXX_USE_CXX11_ABI=<!(node scripts/torch-paths.mjs abi)"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++1y", "-std=gnu++17"],
      "cflags_cc": ["-std=<!(node scripts/torch-paths.mjs std)", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "libraries": [
        "<!@(node scripts/torch-paths.mjs libs)",
        "-Wl,-rpath,<!(node scripts/torch-paths.mjs libdir)"
      ]
    },
    {
      "target_name": "torchsight_preload",
      "sources": ["native/preload.c"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
