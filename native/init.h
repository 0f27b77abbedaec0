// The functions that put each part's classes and functions on the addon's exports; addon.cpp
// calls them at module init.
#pragma once
#include "pch.h"

namespace ts {
void initProcess(Napi::Env env, Napi::Object exports);  // process.cpp
void initConvert(Napi::Env env);                        // convert.cpp (nothing exported)
void initTensor(Napi::Env env, Napi::Object exports);   // tensor.cpp
void initModel(Napi::Env env, Napi::Object exports);    // native_model.cpp
}  // namespace ts
