// Generation: its options, and the worker that runs the loop (Interpreter::generate) off the
// JS thread, streaming each step's tokens (generate.cpp).
#pragma once
#include "interpreter.h"

namespace ts {

struct GenOptions {
  int maxNewTokens = 20;
  double temperature = 0;  // 0: greedy
  int64_t topK = 0;
  double topP = 1;
  uint64_t seed = 0;
  std::vector<int64_t> stopIds;  // eos and the caller's stop ids
  int64_t padId = 0;
  bool useCache = true;
};

// The options of NativeModel.generate (maxNewTokens, temperature, topK, topP, seed, padId,
// useCache, stopIds), checked.
GenOptions parseGenOptions(const Napi::Object& o);
// Queues the generation of `req` (one trace: the prompt) on libuv's pool; the promise gets
// {saved, tokens, steps, usedCache}. onStep (may be empty) gets each step's tokens.
Napi::Value queueGenerate(Napi::Env env, std::shared_ptr<ModelState> model, Request req, GenOptions o,
                          Napi::Function onStep, Napi::Value keep);

}  // namespace ts
