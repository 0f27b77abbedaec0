// A loaded model: its modules, site names and ids, forward graphs, apply rules and the settings
// requests are checked against (made by loader.cpp, configured by the NativeModel).
#pragma once
#include "site_graphs.h"

namespace ts {

// How to apply a module to new values without firing its sites (from the manifest).
struct ApplyRule {
  std::string kind;  // linear, layer_norm, embedding, conv1d, rms_norm, act, identity, method
  double eps = 1e-5;
  std::string fn;    // for act
};

struct ModelState {
  torch::jit::Module module;
  c10::Device device{c10::kCPU};
  c10::ScalarType dtype = at::kFloat;
  std::unordered_map<std::string, int> siteIds;  // interned at load
  std::vector<std::string> siteNames;            // hook sites first, then op sites (.source)
  size_t hookSites = 0;                          // ids below are the export's hook sites
  std::unordered_map<const std::string*, int> siteByAddress;  // hook op's cache, filled as sites fire
  std::unordered_map<std::string, ApplyRule> applyRules;
  int64_t vocabSize = INT64_MAX;     // token ids are checked against these before the forward
  int64_t maxPositions = INT64_MAX;
  // the key/value-cache step graph (step.pt), weights bound to module's; see export_step
  bool hasStep = false;
  torch::jit::Module step;
  int64_t cacheLayers = 0, cacheHeads = 0, cacheHeadDim = 0;
  ForwardGraphs forward, stepForward;  // model.pt's forward; step.pt's when hasStep
  // The executor the graphs run under: SIMPLE on the CPU (no profiling runs, so no warm-up per
  // graph; as fast once running, measured), PROFILING elsewhere (it may fuse kernels on CUDA).
  // TORCHSIGHT_EXECUTOR=simple|profiling chooses.
  torch::jit::ExecutorExecutionMode executor = torch::jit::ExecutorExecutionMode::SIMPLE;
  std::shared_ptr<SiteGraphs> siteGraphs;  // null: off (TORCHSIGHT_SITE_GRAPHS=0, or PROFILING)
  std::shared_ptr<SiteGraphs> editGraphs;  // graphs with op sites or skips (editedForward), built on request
  bool metaCopy = false;  // model.scan's copy (scan.cpp): its graph's node order is not the listing's
  std::mutex mu;  // one forward at a time per model
  // model.scan's copy: the same module objects with meta tensors, built at the first scan (scan.cpp)
  std::shared_ptr<ModelState> scanModel;
  // The submodule at a dotted path; throws UserError when missing.
  torch::jit::Module submodule(const std::string& path) const;
};

}  // namespace ts
