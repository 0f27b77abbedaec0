// Loading a model: model.pt (and step.pt, the key/value-cache step) read from disk into a
// ModelState, with its sites interned and its forward graphs built (loader.cpp).
#pragma once
#include "model_state.h"

namespace ts {
// Load progress: (phase, done, total); phases 'weights' and 'step' count bytes read from
// model.pt and step.pt, 'convert' the dtype conversion (0 then 1).
using LoadProgress = std::function<void(const char* phase, uint64_t done, uint64_t total)>;
// Slow (reads the files and compiles the graphs): the NativeModel runs it on libuv's pool.
std::shared_ptr<ModelState> loadModelState(const std::string& path, const std::string& device, const std::string& dtype,
                                           const std::string& stepPath, const LoadProgress& progress = nullptr);
}  // namespace ts
