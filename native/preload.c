/* torchsight_preload.node: loads libtorch's shared libraries by absolute path before the main
 * addon. A prebuilt torchsight.node names libc10.so, libtorch_cpu.so... by soname only; the
 * dynamic linker matches those names against libraries already loaded, so loading them here
 * first lets one prebuilt binary use a libtorch anywhere on disk, without LD_LIBRARY_PATH (which
 * the process reads once, at start). Plain C and the Node-API C interface: no torch, no C++,
 * compiles in a second, identical for every libtorch. */
#include <dlfcn.h>
#include <string.h>
#define NAPI_VERSION 8
#include <node_api.h>

/* preload(paths: string[]): null on success, else "path: dlerror" of the first failure. */
static napi_value Preload(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  uint32_t n = 0, i;
  bool isArray = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_is_array(env, argv[0], &isArray) != napi_ok || !isArray) {
    napi_throw_type_error(env, NULL, "preload(paths): paths must be an array of strings");
    return NULL;
  }
  napi_get_array_length(env, argv[0], &n);
  for (i = 0; i < n; i++) {
    char path[4096];
    size_t len = 0;
    napi_value item;
    if (napi_get_element(env, argv[0], i, &item) != napi_ok ||
        napi_get_value_string_utf8(env, item, path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
      napi_throw_type_error(env, NULL, "preload(paths): each path must be a string shorter than 4096 bytes");
      return NULL;
    }
    /* RTLD_GLOBAL as Python's torch does for its global deps; never closed: libtorch registers
     * operators at load and must stay for the life of the process. */
    if (!dlopen(path, RTLD_NOW | RTLD_GLOBAL)) {
      const char* err = dlerror();
      char msg[8192];
      size_t m = strlen(path);
      memcpy(msg, path, m);
      msg[m] = 0;
      strncat(msg, ": ", sizeof msg - strlen(msg) - 1);
      strncat(msg, err ? err : "dlopen failed", sizeof msg - strlen(msg) - 1);
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &result);
      return result;
    }
  }
  napi_get_null(env, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "preload", NAPI_AUTO_LENGTH, Preload, NULL, &fn);
  napi_set_named_property(env, exports, "preload", fn);
  return exports;
}
