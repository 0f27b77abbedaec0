// The model: loading a TorchScript export, the torchsight::hook op that serves its sites,
// and the JS class that owns a loaded model.
#include "runtime.h"
#include "workers.h"
#include "init.h"
#include <caffe2/serialize/file_adapter.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

namespace ts {

// Identity unless a forward on this thread has an interpreter waiting. CONSERVATIVE alias
// analysis keeps the JIT from merging two calls with equal inputs into one. The export's graphs
// call this one, by site name; inlined graphs call siteOp below, by id.
static void hookOp(torch::jit::Stack& stack) {
  ForwardContext* ctx = currentForward();
  if (!ctx || ctx->suppress || !ctx->interp) {
    stack.pop_back();  // the site name; the tensor stays as the result
    return;
  }
  c10::IValue site = std::move(stack.back());
  stack.pop_back();
  // Site names are graph constants: the same string object every call, so its address is a
  // cheaper key than its text (one forward at a time per model: the cache needs no lock). Only
  // the modules' own graphs call this op, and they live as long as the model, so an address is
  // never reused for another name.
  const std::string& name = site.toStringRef();
  auto& byAddr = ctx->model->siteByAddress;
  auto hit = byAddr.find(&name);
  int id;
  if (hit != byAddr.end()) {
    id = hit->second;
  } else {
    auto it = ctx->model->siteIds.find(name);
    id = it == ctx->model->siteIds.end() ? -1 : it->second;
    if (byAddr.size() < 1u << 16) byAddr.emplace(&name, id);
  }
  if (id >= 0) ctx->interp->fire(id, stack.back());
}

// The hook op with the site's id (interned at load) in place of its name: no lookup a call, and
// nothing cached by address (site graphs are built and freed while the model lives).
static void siteOp(torch::jit::Stack& stack) {
  int64_t id = stack.back().toInt();
  stack.pop_back();
  ForwardContext* ctx = currentForward();
  if (!ctx || ctx->suppress || !ctx->interp) return;
  ctx->interp->fire((int)id, stack.back());
}

static torch::jit::RegisterOperators registerHook({
    torch::jit::Operator("torchsight::hook(Tensor x, str site) -> Tensor", [](torch::jit::Stack& s) { hookOp(s); },
                         c10::AliasAnalysisKind::CONSERVATIVE),
    torch::jit::Operator("torchsight::site(Tensor x, int id) -> Tensor", [](torch::jit::Stack& s) { siteOp(s); },
                         c10::AliasAnalysisKind::CONSERVATIVE),
});

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

static const c10::Symbol& hookKind() {
  static const auto k = c10::Symbol::fromQualString("torchsight::hook");
  return k;
}
static const c10::Symbol& siteKind() {
  static const auto k = c10::Symbol::fromQualString("torchsight::site");
  return k;
}

// Every site the traced graphs call, in the order first seen, interned to ids.
static void collectSites(ModelState& s) {
  std::function<void(torch::jit::Block*)> walk = [&](torch::jit::Block* b) {
    for (auto* node : b->nodes()) {
      for (auto* sub : node->blocks()) walk(sub);
      if (node->kind() != hookKind() || node->inputs().size() != 2) continue;
      auto v = torch::jit::toIValue(node->input(1));
      if (!v || !v->isString()) continue;
      const auto& name = v->toStringRef();
      if (s.siteIds.emplace(name, (int)s.siteNames.size()).second) s.siteNames.push_back(name);
    }
  };
  for (const auto& mod : s.module.modules())
    for (const auto& method : mod.get_methods()) walk(method.graph()->block());
  if (s.hasStep)
    for (const auto& mod : s.step.modules())
      for (const auto& method : mod.get_methods()) walk(method.graph()->block());
}

// `m`'s forward inlined into one graph (submodule calls become the calls' bodies), taking the
// module as its first argument, its hook ops turned into site ops (by id). An inlined forward
// skips one interpreter frame and executor lookup per module call: ~12% of the tiny GPT-2's
// forward here.
static std::shared_ptr<torch::jit::Graph> inlinedGraph(torch::jit::Module& m, const ModelState& s) {
  auto g = torch::jit::toGraphFunction(m.get_method("forward").function()).graph()->copy();
  torch::jit::Inline(*g);
  std::function<void(torch::jit::Block*)> walk = [&](torch::jit::Block* b) {
    for (auto it = b->nodes().begin(); it != b->nodes().end();) {
      torch::jit::Node* node = *it;
      ++it;  // before node is replaced
      for (auto* sub : node->blocks()) walk(sub);
      if (node->kind() != hookKind() || node->inputs().size() != 2) continue;
      auto name = torch::jit::toIValue(node->input(1));
      auto id = name && name->isString() ? s.siteIds.find(name->toStringRef()) : s.siteIds.end();
      if (id == s.siteIds.end()) continue;
      torch::jit::WithInsertPoint at(node);
      torch::jit::Node* site = g->create(siteKind(), {node->input(0), g->insertConstant((int64_t)id->second)}, 1);
      site->insertBefore(node);
      site->output()->setType(node->output()->type());
      node->output()->replaceAllUsesWith(site->output());
      node->destroy();
    }
  };
  walk(g->block());
  torch::jit::EliminateDeadCode(g);  // the names' constants
  return g;
}

std::shared_ptr<torch::jit::GraphFunction> siteGraph(torch::jit::Graph& graph, const std::string& name,
                                                     const std::vector<char>* keep, torch::jit::ExecutorExecutionMode mode) {
  auto g = graph.copy();
  if (keep) {
    // a site op dropped: its output is its input
    std::function<void(torch::jit::Block*)> strip = [&](torch::jit::Block* b) {
      for (auto it = b->nodes().begin(); it != b->nodes().end();) {
        torch::jit::Node* node = *it;
        for (auto* sub : node->blocks()) strip(sub);
        bool drop = node->kind() == hookKind();  // a site no id was interned for (none expected)
        if (node->kind() == siteKind()) {
          auto id = torch::jit::toIValue(node->input(1));
          drop = !(id && id->isInt() && id->toInt() >= 0 && id->toInt() < (int64_t)keep->size() && (*keep)[id->toInt()]);
        }
        if (drop) {
          node->output()->replaceAllUsesWith(node->input(0));
          it.destroyCurrent();
        } else {
          ++it;
        }
      }
    };
    strip(g->block());
    torch::jit::EliminateDeadCode(g);
  }
  auto fn = std::make_shared<torch::jit::GraphFunction>(c10::QualifiedName(name), g, nullptr, mode);
  if (mode == torch::jit::ExecutorExecutionMode::SIMPLE) {
    torch::jit::Stack none;  // the simple executor compiles without looking at inputs
    fn->get_executor().getPlanFor(none);
  }
  return fn;
}

static ForwardGraphs loadForward(torch::jit::Module& m, char kind, const ModelState& s) {
  ForwardGraphs f;
  f.kind = kind;
  f.module = m;
  // TORCHSIGHT_INLINE=0 runs the modules' own forward methods instead (for comparison)
  const char* inl = std::getenv("TORCHSIGHT_INLINE");
  if (inl && std::string(inl) == "0") return f;
  f.graph = inlinedGraph(m, s);
  std::string name = kind == 's' ? "step" : "forward";
  const std::vector<char> none;
  f.withSites = siteGraph(*f.graph, name, nullptr, s.executor);
  f.plain = siteGraph(*f.graph, name + "_without_sites", &none, s.executor);
  return f;
}

std::shared_ptr<torch::jit::GraphFunction> SiteGraphs::find(const std::string& key, bool newRequest, bool& want) {
  std::lock_guard<std::mutex> lock(mu_);
  want = false;
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    // keys asked for once are forgotten in bulk when a sweep over many site sets piles them up
    if (entries_.size() >= 64 * capacity_ + 256)
      for (auto e = entries_.begin(); e != entries_.end();)
        e = !e->second.fn && !e->second.building && !e->second.failed ? entries_.erase(e) : std::next(e);
    it = entries_.emplace(key, Entry()).first;
  }
  Entry& e = it->second;
  if (e.fn) {
    e.lastUse = ++clock_;
    e.uses++;
    return e.fn;
  }
  if (newRequest) e.requests++;
  want = e.requests >= 2 && !e.building && !e.failed;
  return nullptr;
}

bool SiteGraphs::claim(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (building_ || it == entries_.end() || it->second.fn || it->second.building || it->second.failed) return false;
  it->second.building = building_ = true;
  return true;
}

void SiteGraphs::finish(const std::string& key, std::shared_ptr<torch::jit::GraphFunction> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  building_ = false;
  Entry& e = entries_[key];
  e.building = false;
  e.failed = !fn;
  e.fn = std::move(fn);
  e.lastUse = ++clock_;
  size_t built = 0;
  for (auto& [k, v] : entries_) built += !!v.fn;
  while (built-- > capacity_) {  // the least recently used goes (a forward running it holds its own reference)
    auto lru = entries_.end();
    for (auto i = entries_.begin(); i != entries_.end(); ++i)
      if (i->second.fn && (lru == entries_.end() || i->second.lastUse < lru->second.lastUse)) lru = i;
    entries_.erase(lru);
  }
}

// How many site ops a graph calls (blocks included): what a site graph really kept.
static int countSiteOps(torch::jit::Block* b) {
  int n = 0;
  for (auto* node : b->nodes()) {
    n += node->kind() == siteKind() || node->kind() == hookKind();
    for (auto* sub : node->blocks()) n += countSiteOps(sub);
  }
  return n;
}

std::vector<SiteGraphs::Info> SiteGraphs::info() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Info> out;
  for (auto& [k, v] : entries_)
    if (v.fn || v.building) out.push_back({k, !!v.fn, v.uses, v.fn ? countSiteOps(v.fn->graph()->block()) : 0});
  return out;
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

// A TorchScript file onto `device`, in eval mode; a bad file is an error naming it.
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
  // site graphs need the simple executor: under the profiling one a new graph's first two runs
  // are slow (profiled, then optimized), and those would fall on the user's requests
  const char* cap = std::getenv("TORCHSIGHT_SITE_GRAPHS");
  size_t capacity = cap ? std::strtoul(cap, nullptr, 10) : 8;  // ~2-5 MB each (a graph and its compiled code)
  if (capacity > 0 && s->forward.graph && s->executor == torch::jit::ExecutorExecutionMode::SIMPLE)
    s->siteGraphs = std::make_shared<SiteGraphs>(capacity);
  return s;
}

static GenOptions parseGenOptions(const Napi::Object& o) {
  GenOptions g;
  auto num = [&](const char* k, double lo, double hi, double dflt) -> double {
    auto v = o.Get(k);
    if (v.IsUndefined() || v.IsNull()) return dflt;
    if (!v.IsNumber()) throw UserError(std::string("generate: ") + k + " must be a number");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= lo && d <= hi))
      throw UserError(std::string("generate: ") + k + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(d));
    return d;
  };
  g.maxNewTokens = (int)num("maxNewTokens", 0, 1 << 20, 20);
  g.temperature = num("temperature", 0, 1e6, 0);
  g.topK = (int64_t)num("topK", 0, 1e9, 0);
  g.topP = num("topP", 0, 1, 1);
  g.seed = (uint64_t)num("seed", 0, 9007199254740991.0, 0);
  g.padId = (int64_t)num("padId", 0, 1e12, 0);
  g.useCache = !o.Get("useCache").IsBoolean() || o.Get("useCache").As<Napi::Boolean>().Value();
  auto stops = o.Get("stopIds");
  if (stops.IsArray()) {
    auto a = stops.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length() && i < 4096; ++i) {
      if (!a.Get(i).IsNumber()) throw UserError("generate: stopIds must be token ids");
      g.stopIds.push_back(a.Get(i).As<Napi::Number>().Int64Value());
    }
  }
  return g;
}

// ---- the JS class ---------------------------------------------------------------------

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("sites", &ModelWrap::Sites), InstanceMethod("configure", &ModelWrap::Configure),
                        InstanceMethod("run", &ModelWrap::Run), InstanceMethod("generate", &ModelWrap::Generate),
                        InstanceMethod("dispose", &ModelWrap::Dispose), InstanceMethod("siteGraphs", &ModelWrap::SiteGraphsInfo),
                        InstanceAccessor("hasCache", &ModelWrap::HasCache, nullptr),
                        InstanceAccessor("device", &ModelWrap::Device, nullptr),
                        InstanceAccessor("dtype", &ModelWrap::Dtype, nullptr)});
  }
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    state_ = std::move(addonData(info.Env()).pendingModel);
    if (!state_) {
      Napi::TypeError::New(info.Env(), "NativeModel cannot be constructed directly; use loadModel")
          .ThrowAsJavaScriptException();
      return;
    }
  }

 private:
  ModelState& state() {
    if (!state_) throw UserError("this model was disposed");
    return *state_;
  }
  Napi::Value Sites(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto& names = state().siteNames;
      auto arr = Napi::Array::New(info.Env(), names.size());
      for (size_t i = 0; i < names.size(); ++i) arr.Set((uint32_t)i, names[i]);
      return arr;
    });
  }
  // configure({vocabSize, maxPositions, apply: {path: {kind, eps?, fn?}}}) from the manifest.
  Napi::Value Configure(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto& s = state();
      if (info.Length() < 1 || !info[0].IsObject()) throw UserError("configure(options)");
      auto o = info[0].As<Napi::Object>();
      std::lock_guard<std::mutex> lock(s.mu);
      if (o.Get("vocabSize").IsNumber()) s.vocabSize = o.Get("vocabSize").As<Napi::Number>().Int64Value();
      if (o.Get("maxPositions").IsNumber()) s.maxPositions = o.Get("maxPositions").As<Napi::Number>().Int64Value();
      auto cache = o.Get("cache");
      if (cache.IsObject()) {
        auto c = cache.As<Napi::Object>();
        auto dim = [&](const char* k) -> int64_t {
          auto v = c.Get(k);
          if (!v.IsNumber() || v.As<Napi::Number>().Int64Value() < 1 || v.As<Napi::Number>().Int64Value() > (1 << 20))
            throw UserError(std::string("configure: cache.") + k + " must be a positive integer");
          return v.As<Napi::Number>().Int64Value();
        };
        s.cacheLayers = dim("layers");
        s.cacheHeads = dim("kvHeads");
        s.cacheHeadDim = dim("headDim");
      }
      auto apply = o.Get("apply");
      if (apply.IsObject()) {
        auto ao = apply.As<Napi::Object>();
        auto keys = ao.GetPropertyNames();
        for (uint32_t i = 0; i < keys.Length(); ++i) {
          std::string path = keys.Get(i).As<Napi::String>().Utf8Value();
          auto r = ao.Get(path);
          if (!r.IsObject()) continue;
          auto ro = r.As<Napi::Object>();
          ApplyRule rule;
          if (!ro.Get("kind").IsString()) continue;
          rule.kind = ro.Get("kind").As<Napi::String>().Utf8Value();
          if (rule.kind == "none") continue;
          if (ro.Get("eps").IsNumber()) rule.eps = ro.Get("eps").As<Napi::Number>().DoubleValue();
          if (ro.Get("fn").IsString()) rule.fn = ro.Get("fn").As<Napi::String>().Utf8Value();
          s.submodule(path);  // must exist
          s.applyRules[path] = rule;
        }
      }
      return info.Env().Undefined();
    });
  }
  // run(request): always a promise (guardedAsync).
  Napi::Value Run(const Napi::CallbackInfo& info) {
    return guardedAsync(info.Env(), [&]() -> Napi::Value {
      auto& s = state();
      if (info.Length() < 1 || !info[0].IsObject()) throw UserError("run(request): request must be an object");
      return queueRun(info.Env(), state_, parseRequest(info[0].As<Napi::Object>(), s), info[0]);
    });
  }
  // generate(request, options, onStep?): request as for run() with one trace (the prompt).
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    return guardedAsync(info.Env(), [&]() -> Napi::Value {
      auto& s = state();
      if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject())
        throw UserError("generate(request, options, onStep?)");
      Request req = parseRequest(info[0].As<Napi::Object>(), s);
      if (req.traces.size() != 1) throw UserError("generate: the request must hold exactly one trace (the prompt)");
      GenOptions o = parseGenOptions(info[1].As<Napi::Object>());
      if (s.hasStep && (s.cacheLayers == 0)) o.useCache = false;
      Napi::Function onStep;
      if (info.Length() > 2 && info[2].IsFunction()) onStep = info[2].As<Napi::Function>();
      return queueGenerate(info.Env(), state_, std::move(req), o, onStep, info[0]);
    });
  }
  // siteGraphs(): the site graphs built or building, as [{forward: 'model' | 'step', sites, ready, uses, siteOps}]
  Napi::Value SiteGraphsInfo(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      auto& s = state();
      auto arr = Napi::Array::New(env);
      if (!s.siteGraphs) return arr;
      for (const auto& g : s.siteGraphs->info()) {
        auto o = Napi::Object::New(env);
        o.Set("forward", g.key[0] == 's' ? "step" : "model");
        auto sites = Napi::Array::New(env);
        for (size_t i = 1; i + sizeof(int32_t) <= g.key.size(); i += sizeof(int32_t)) {
          int32_t id;
          std::memcpy(&id, g.key.data() + i, sizeof id);
          sites.Set(sites.Length(), s.siteNames.at(id));
        }
        o.Set("sites", sites);
        o.Set("ready", g.ready);
        o.Set("uses", (double)g.uses);
        o.Set("siteOps", g.siteOps);  // site calls in the built graph (0 while building)
        arr.Set(arr.Length(), o);
      }
      return arr;
    });
  }
  Napi::Value HasCache(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), state().hasStep); });
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_.reset();  // a running forward keeps its own reference until it ends
    return info.Env().Undefined();
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return Napi::String::New(info.Env(), deviceName(state().device)); });
  }
  Napi::Value Dtype(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return Napi::String::New(info.Env(), dtypeName(state().dtype)); });
  }
  std::shared_ptr<ModelState> state_;
};

Napi::Object newModelObject(Napi::Env env, std::shared_ptr<ModelState> s) {
  addonData(env).pendingModel = std::move(s);
  auto obj = addonData(env).modelCtor.New({});
  addonData(env).pendingModel.reset();  // already taken by the constructor, unless it never ran
  return obj;
}

static Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString())
      throw UserError("loadModel(path: string, device: string, dtype: string, stepPath?: string, onProgress?: function)");
    std::string step = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
    Napi::Function onProgress = info.Length() > 4 && info[4].IsFunction() ? info[4].As<Napi::Function>() : Napi::Function();
    return queueLoad(info.Env(), info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                     info[2].As<Napi::String>().Utf8Value(), step, onProgress);
  });
}

void initModel(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = ModelWrap::Init(env);
  addonData(env).modelCtor = Napi::Persistent(cls);
  exports.Set("NativeModel", cls);
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
}

}  // namespace ts
