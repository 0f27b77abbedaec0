// The addon's per-instance state (one per JS thread that loads the addon): property names made
// once, the array maker, the NativeModel constructor.
#pragma once
#include "pch.h"

namespace ts {

struct ModelState;
// Property names read or written on every request. A C-string key makes V8 look the name up in
// its string table on every Get/Set (a few microseconds a request); these are made once.
#define TS_KEYS(X) X(recordSites) X(returnLogits) X(cancel) X(graph) X(traces) X(code) X(strings) X(tensors) \
  X(batch) X(seq) X(ids) X(mask) X(pos) X(invokes) X(begin) X(end) X(stop) X(saved) X(logits) X(fired)
enum class Key {
#define TS_KEY_ENUM(name) name,
  TS_KEYS(TS_KEY_ENUM)
#undef TS_KEY_ENUM
  Count
};
struct AddonData {
  Napi::ObjectReference keys;  // an Array of the names, by Key (N-API 8 refers to objects only)
  Napi::FunctionReference arrayOf;  // the array maker of arrayOf()
  Napi::FunctionReference modelCtor;
  // the state a NativeModel being constructed takes (handed over on the JS thread, never held
  // by a JS object: dispose() must free the model at once, not when the GC gets to a handle)
  std::shared_ptr<ModelState> pendingModel;
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// The property name `k`, as a JS string made once per addon instance.
inline Napi::String key(Napi::Env env, Key k) {
  auto& keys = addonData(env).keys;
  if (keys.IsEmpty()) {
    static const char* const names[] = {
#define TS_KEY_NAME(name) #name,
        TS_KEYS(TS_KEY_NAME)
#undef TS_KEY_NAME
    };
    auto arr = Napi::Array::New(env, (size_t)Key::Count);
    for (uint32_t i = 0; i < (uint32_t)Key::Count; ++i) arr.Set(i, Napi::String::New(env, names[i]));
    keys = Napi::Persistent(arr.As<Napi::Object>());
  }
  return keys.Value().Get((uint32_t)k).As<Napi::String>();
}

}  // namespace ts
