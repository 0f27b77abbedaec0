// Long native work off the JS thread: loading a model and running a request.
#pragma once
#include "runtime.h"

namespace ts {
std::shared_ptr<ModelState> loadModelState(const std::string& path, const std::string& device, const std::string& dtype,
                                           const std::string& stepPath);
Napi::Object newModelObject(Napi::Env env, std::shared_ptr<ModelState> s);
Napi::Value queueLoad(Napi::Env env, std::string path, std::string device, std::string dtype, std::string stepPath);
Napi::Value queueGenerate(Napi::Env env, std::shared_ptr<ModelState> model, Request req, GenOptions o,
                          Napi::Function onStep, Napi::Value keep);
Napi::Value queueRun(Napi::Env env, std::shared_ptr<ModelState> model, Request req, Napi::Value keep);
}  // namespace ts
