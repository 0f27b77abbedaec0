// model.scan: a request run for shapes and dtypes only, on a copy of the model whose weights
// are meta tensors (scan.cpp).
#pragma once
#include "interpreter.h"

namespace ts {

// Queues `req` to run on the model's meta copy (built at the first scan) on libuv's pool; the
// promise gets {saved} with {shape, dtype} in place of every tensor.
// Registers meta kernels for the ops the running libtorch has none for (meta_kernels.cpp); once.
void ensureMetaKernels();

Napi::Value queueScan(Napi::Env env, std::shared_ptr<ModelState> model, Request req, Napi::Value keep);

}  // namespace ts
