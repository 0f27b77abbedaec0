// Module entry: makes the per-instance state and registers each part's classes and functions.
#include "addon_data.h"
#include "init.h"

namespace ts {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  initConvert(env);
  initTensor(env, exports);
  initModel(env, exports);
  initProcess(env, exports);
  return exports;
}

}  // namespace ts

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ts::Init(env, exports); }
NODE_API_MODULE(torchsight, InitAddon)
