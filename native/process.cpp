// Process-wide settings and facts: libtorch's version, CUDA devices and thread pools, OpenBLAS's
// kernels, and the TorchScript executor mode chosen at start.
#include "common.h"
#include "init.h"
#include <torch/version.h>
#include <dlfcn.h>

namespace ts {

// OpenBLAS's own name for the kernels it chose, or null. It is loaded as libtorch's dependency
// (not into the global scope), so it is looked for by the names Debian and pip install it under.
static const char* openblasCore() {
  using CoreName = char* (*)();
  void* fn = dlsym(RTLD_DEFAULT, "openblas_get_corename");
  for (const char* lib : {"libopenblas.so.0", "libblas.so.3"}) {
    if (fn) break;
    if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD)) {
      fn = dlsym(h, "openblas_get_corename");
      dlclose(h);  // NOLOAD took a reference; the library stays mapped by libtorch's own
    }
  }
  return fn ? reinterpret_cast<CoreName>(fn)() : nullptr;
}

static Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("torch", TORCH_VERSION);
  o.Set("cudaAvailable", torch::cuda::is_available());
  o.Set("cudaDevices", (double)(torch::cuda::is_available() ? torch::cuda::device_count() : 0));
  o.Set("threads", at::get_num_threads());
  o.Set("interopThreads", at::get_num_interop_threads());
  o.Set("parallelInfo", at::get_parallel_info());
  // the kernels OpenBLAS picked for this CPU, when OpenBLAS is what libtorch's BLAS resolved to:
  // an OpenBLAS older than the CPU falls back to generic ones (doctor says how to choose)
  if (const char* core = openblasCore()) o.Set("blasCore", std::string(core));
  return o;
}

static Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw UserError("setNumThreads(n: number)");
    int n = info[0].As<Napi::Number>().Int32Value();
    if (n < 1 || n > 1024) throw UserError("setNumThreads: n must be in [1, 1024]");
    at::set_num_threads(n);
    return Napi::Number::New(info.Env(), at::get_num_threads());
  });
}

void initProcess(Napi::Env env, Napi::Object exports) {
  // TORCHSIGHT_JIT_PROFILING=0 runs TorchScript with the simple executor (no profiling runs).
  const char* prof = std::getenv("TORCHSIGHT_JIT_PROFILING");
  if (prof && std::string(prof) == "0") {
    torch::jit::getProfilingMode() = false;
    torch::jit::getExecutorMode() = false;
  }
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setNumThreads", Napi::Function::New(env, SetThreads));
}

}  // namespace ts
