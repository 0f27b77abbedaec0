// Long native work off the JS thread: loading a model and running a request.
#pragma once
#include "runtime.h"

namespace ts {
// Load progress: (phase, done, total); phases 'weights' and 'step' count bytes read from
// model.pt and step.pt, 'convert' the dtype conversion (0 then 1).
using LoadProgress = std::function<void(const char* phase, uint64_t done, uint64_t total)>;
std::shared_ptr<ModelState> loadModelState(const std::string& path, const std::string& device, const std::string& dtype,
                                           const std::string& stepPath, const LoadProgress& progress = nullptr);
Napi::Object newModelObject(Napi::Env env, std::shared_ptr<ModelState> s);
Napi::Value queueLoad(Napi::Env env, std::string path, std::string device, std::string dtype, std::string stepPath,
                      Napi::Function onProgress);
Napi::Value queueGenerate(Napi::Env env, std::shared_ptr<ModelState> model, Request req, GenOptions o,
                          Napi::Function onStep, Napi::Value keep);
Napi::Value queueRun(Napi::Env env, std::shared_ptr<ModelState> model, Request req, Napi::Value keep);
}  // namespace ts
