// Loading a model: model.pt and step.pt read from disk (with progress), step.pt's weights bound
// to model.pt's, the dtype converted, the sites interned and the forward graphs built.
#include "loader.h"
#include <caffe2/serialize/file_adapter.h>

namespace ts {

torch::jit::Module ModelState::submodule(const std::string& path) const {
  torch::jit::Module m = module;
  if (path.empty()) return m;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!m.hasattr(part) || !m.attr(part).isModule()) throw UserError("module '" + path + "' not found in model.pt");
    m = m.attr(part).toModule();
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return m;
}

// Binds every parameter of `step` (placeholders in step.pt) to the tensor of the same path in
// `main`, so the cache graph shares the model's weights instead of holding a copy.
static void bindWeights(torch::jit::Module& step, const torch::jit::Module& main, const std::string& file) {
  std::unordered_map<std::string, torch::jit::Module> mains;
  for (const auto& nm : main.named_modules()) mains.emplace(nm.name, nm.value);
  for (auto nm : step.named_modules()) {
    auto it = mains.find(nm.name);
    for (const auto& p : nm.value.named_parameters(/*recurse=*/false)) {
      if (it == mains.end() || !it->second.hasattr(p.name) || !it->second.attr(p.name).isTensor())
        throw UserError(file + ": parameter '" + (nm.name.empty() ? "" : nm.name + ".") + p.name +
                        "' has no counterpart in model.pt (re-export both files together)");
      auto w = it->second.attr(p.name).toTensor();
      if (!w.sizes().equals(p.value.sizes()))
        throw UserError(file + ": parameter '" + nm.name + "." + p.name + "' has shape " + shapeString(p.value.sizes()) +
                        " but model.pt's is " + shapeString(w.sizes()));
      nm.value.setattr(p.name, w);
    }
  }
}

// Reads a model file for libtorch and counts the bytes, so loading reports progress without a
// copy of the file in memory (libtorch reads each tensor's record as it unpickles it).
class ProgressReader : public caffe2::serialize::ReadAdapterInterface {
 public:
  ProgressReader(const std::string& path, const char* phase, const LoadProgress& cb) : file_(path), phase_(phase), cb_(cb) {}
  size_t size() const override { return file_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* what = "") const override {
    size_t got = file_.read(pos, buf, n, what);
    done_ = std::min<uint64_t>(done_ + got, size());
    int pct = size() ? (int)(done_ * 100 / size()) : 100;
    if (cb_ && pct != lastPct_) {  // at most ~100 reports a file
      lastPct_ = pct;
      cb_(phase_, done_, size());
    }
    return got;
  }
  // libtorch does not read every byte (the zip's padding): report the end once it is done
  void finish() const {
    if (cb_ && done_ < size()) cb_(phase_, size(), size());
  }

 private:
  caffe2::serialize::FileAdapter file_;
  const char* phase_;
  const LoadProgress& cb_;
  mutable uint64_t done_ = 0;
  mutable int lastPct_ = -1;
};


// A TorchScript file onto `device`, in eval mode; a bad file is an error naming it.
static torch::jit::Module loadScript(const std::string& path, const c10::Device& device, const char* phase, const LoadProgress& progress) {
  torch::jit::Module m;
  try {
    auto reader = std::make_shared<ProgressReader>(path, phase, progress);
    m = torch::jit::load(reader, device);
    reader->finish();
  } catch (const std::exception& e) {
    std::string msg = errorMessage(e);
    throw UserError(path + ": not a loadable TorchScript model (" + msg.substr(0, msg.find('\n')) + ")");
  }
  m.eval();
  return m;
}

std::shared_ptr<ModelState> loadModelState(const std::string& path, const std::string& device,
                                           const std::string& dtype, const std::string& stepPath, const LoadProgress& progress) {
  auto s = std::make_shared<ModelState>();
  s->device = parseDevice(device);
  s->module = loadScript(path, s->device, "weights", progress);
  if (!dtype.empty()) {
    s->dtype = parseDtype(dtype);
    if (!at::isFloatingType(s->dtype)) throw UserError("dtype must be a floating type, got '" + dtype + "'");
    if (progress) progress("convert", 0, 1);
    s->module.to(s->dtype);
    if (progress) progress("convert", 1, 1);
  } else {
    for (const auto& p : s->module.parameters()) {
      s->dtype = p.scalar_type();
      break;
    }
  }
  if (!stepPath.empty()) {
    s->step = loadScript(stepPath, s->device, "step", progress);
    if (!dtype.empty()) s->step.to(s->dtype);
    bindWeights(s->step, s->module, stepPath);
    s->hasStep = true;
  }
  collectSites(*s);
  if (!s->device.is_cpu()) s->executor = torch::jit::ExecutorExecutionMode::PROFILING;
  if (const char* ex = std::getenv("TORCHSIGHT_EXECUTOR")) {
    if (std::string(ex) == "simple") s->executor = torch::jit::ExecutorExecutionMode::SIMPLE;
    if (std::string(ex) == "profiling") s->executor = torch::jit::ExecutorExecutionMode::PROFILING;
  }
  s->forward = loadForward(s->module, 'f', *s);
  if (s->hasStep) s->stepForward = loadForward(s->step, 's', *s);
  s->editGraphs = std::make_shared<SiteGraphs>(8);
  probeOpShapes(*s);  // two short forwards: each op's shape for String(...source)
  // site graphs need the simple executor: under the profiling one a new graph's first two runs
  // are slow (profiled, then optimized), and those would fall on the user's requests
  const char* cap = std::getenv("TORCHSIGHT_SITE_GRAPHS");
  size_t capacity = cap ? std::strtoul(cap, nullptr, 10) : 8;  // ~2-5 MB each (a graph and its compiled code)
  if (capacity > 0 && s->forward.graph && s->executor == torch::jit::ExecutorExecutionMode::SIMPLE)
    s->siteGraphs = std::make_shared<SiteGraphs>(capacity);
  return s;
}

}  // namespace ts
