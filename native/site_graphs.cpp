// The forward's graphs around its sites: the export's hook ops interned and inlined as site ops
// at load, copies keeping only the sites a request uses, and the cache that builds those on
// libuv's pool (SiteGraphs, SiteGraphWorker).
#include "model_state.h"
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

namespace ts {

static const c10::Symbol& hookKind() {
  static const auto k = c10::Symbol::fromQualString("torchsight::hook");
  return k;
}
static const c10::Symbol& siteKind() {
  static const auto k = c10::Symbol::fromQualString("torchsight::site");
  return k;
}

// Every site the traced graphs call, in the order first seen, interned to ids.
void collectSites(ModelState& s) {
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
  s.hookSites = s.siteNames.size();
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
                                                     const std::vector<char>* keep, torch::jit::ExecutorExecutionMode mode,
                                                     const std::function<void(torch::jit::Graph&)>& edit) {
  auto g = graph.copy();
  if (edit) edit(*g);
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

// ---- operations inside modules (.source) -------------------------------------------

// An operation, for `.source`: an aten:: call with one tensor result. Calls that yield sizes,
// numbers or lists (aten::size, aten::Int, aten::split) and prim:: bookkeeping (constants,
// attributes, tuples and lists) are not operations.
static bool isOperation(torch::jit::Node* n) {
  return n->kind().is_aten() && n->outputs().size() == 1 && n->output()->type()->cast<c10::TensorType>();
}

// The module an inlined node came from: the chain of module instances on its inlined call
// stack (outermost first), each found among the descendants of the one before by its class
// type and attribute name (a call through a ModuleList names the list's item, "3", with the list
// itself skipped: the descendant search bridges it). No call stack: the root module.
class ModuleResolver {
 public:
  explicit ModuleResolver(const torch::jit::Module& m) {
    for (const auto& nm : m.named_modules()) byType_[nm.value.type().get()].push_back(nm.name);
  }
  std::string pathOf(torch::jit::Node* node) {
    auto cs = node->callstack();
    if (!cs) return "";
    std::string path;
    auto entries = (*cs)->vec();
    for (auto& entry : entries) {
      auto info = std::get<2>(entry);
      if (!info) continue;
      auto type = info->class_type();
      std::string inst = info->instance_name();
      if (!type || inst == "SELF") continue;  // a method of the module already reached
      auto it = byType_.find(type.get());
      if (it == byType_.end()) continue;
      const std::string* best = nullptr;
      for (const auto& p : it->second) {
        if (!path.empty() && p.compare(0, path.size() + 1, path + ".") != 0) continue;
        bool named = inst == "INSTANCE_NAME_UNKNOWN" || p == inst ||
                     (p.size() > inst.size() && p.compare(p.size() - inst.size() - 1, std::string::npos, "." + inst) == 0);
        if (named && p != path && (!best || p.size() < best->size())) best = &p;
      }
      if (best) path = *best;
    }
    return path;
  }

 private:
  std::unordered_map<const c10::ClassType*, std::vector<std::string>> byType_;
};

static std::string opSiteName(const std::string& module, const std::string& op, const std::string& what) {
  return (module.empty() ? "" : module + ".") + "source." + op + ":" + what;
}

// Lists the operations of `f`'s graph, numbered per module and kind in graph order. model.pt's
// sites are interned; step.pt's take the same names only for modules whose operations are
// model.pt's, kind for kind (a module whose step differs, a cache concatenation say, has no op
// sites in the step forward: reading them at a step says they never fired).
static void listOps(ForwardGraphs& f, torch::jit::Module& m, ModelState& s) {
  ModuleResolver modules(m);
  std::unordered_map<std::string, std::unordered_map<std::string, int>> counts;  // module -> kind -> next index
  int ordinal = 0;
  for (auto* n : f.graph->block()->nodes()) {
    int at = ordinal++;
    if (!isOperation(n)) continue;
    OpSite op;
    op.module = modules.pathOf(n);
    op.kind = n->kind().toQualString();
    std::string k = n->kind().toUnqualString();
    op.name = k + "_" + std::to_string(counts[op.module][k]++);
    op.node = at;
    f.ops.push_back(std::move(op));
  }
  std::unordered_map<std::string, std::vector<std::string>> kinds, mainKinds;
  for (const auto& op : f.ops) kinds[op.module].push_back(op.kind);
  if (f.kind == 's')
    for (const auto& op : s.forward.ops) mainKinds[op.module].push_back(op.kind);
  auto intern = [&](const std::string& name) {
    auto it = s.siteIds.find(name);
    if (it != s.siteIds.end()) return it->second;
    int id = (int)s.siteNames.size();
    s.siteIds.emplace(name, id);
    s.siteNames.push_back(name);
    return id;
  };
  std::vector<torch::jit::Node*> nodes(f.graph->block()->nodes().begin(), f.graph->block()->nodes().end());
  for (size_t i = 0; i < f.ops.size(); ++i) {
    OpSite& op = f.ops[i];
    if (f.kind == 's' && kinds[op.module] != mainKinds[op.module]) continue;
    torch::jit::Node* n = nodes[op.node];
    op.output = intern(opSiteName(op.module, op.name, "output"));
    f.opOfSite[op.output] = (int)i;
    for (size_t k = 0; k < n->inputs().size(); ++k) {
      int id = -1;
      if (n->input(k)->type()->cast<c10::TensorType>()) {
        id = intern(opSiteName(op.module, op.name, "input:" + std::to_string(k)));
        f.opOfSite[id] = (int)i;
      }
      op.inputs.push_back(id);
    }
  }
}

// Site ops for the op sites `ids` of `f` in `g` (a copy of f.graph): after the node for its
// output, before it for an input (only that node's use of the input goes through the site).
static void insertOpSites(torch::jit::Graph& g, const ForwardGraphs& f, const std::vector<int>& ids) {
  std::vector<torch::jit::Node*> nodes(g.block()->nodes().begin(), g.block()->nodes().end());
  for (int id : ids) {
    auto it = f.opOfSite.find(id);
    if (it == f.opOfSite.end()) continue;  // not in this forward: a read of it says it never fired
    const OpSite& op = f.ops[it->second];
    if (op.node >= (int)nodes.size()) continue;
    torch::jit::Node* n = nodes[op.node];
    torch::jit::WithInsertPoint at(n);  // the id's constant goes before n
    auto* idConst = g.insertConstant((int64_t)id);
    if (op.output == id) {
      torch::jit::Node* site = g.create(siteKind(), {n->output(), idConst}, 1);
      site->insertAfter(n);
      site->output()->setType(n->output()->type());
      n->output()->replaceAllUsesWith(site->output());
      site->replaceInput(0, n->output());
      continue;
    }
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      if (op.inputs[k] != id) continue;
      torch::jit::Node* site = g.create(siteKind(), {n->input(k), idConst}, 1);
      site->insertBefore(n);
      site->output()->setType(n->input(k)->type());
      n->replaceInput(k, site->output());
    }
  }
}

static int siteIdOf(torch::jit::Node* n) {
  if (n->kind() != siteKind()) return -1;
  auto id = torch::jit::toIValue(n->input(1));
  return id && id->isInt() ? (int)id->toInt() : -1;
}

// Skips modules in `g`: each call's output site takes the value of the same call's input site,
// and the sites inside the module go, so dead-code elimination drops what only the module's
// output needed (what its other outputs feed still runs).
static void skipModules(torch::jit::Graph& g, const ModelState& s, const std::vector<std::pair<int, int>>& skips) {
  std::unordered_map<int, std::vector<torch::jit::Node*>> byId;
  for (auto* n : g.block()->nodes()) {
    int id = siteIdOf(n);
    if (id >= 0) byId[id].push_back(n);
  }
  std::vector<std::string> inside;
  for (auto [out, in] : skips) {
    const std::string& outName = s.siteNames.at(out);
    std::string module = outName.substr(0, outName.find(':'));
    auto& outs = byId[out];
    auto& ins = byId[in];
    if (outs.empty() || ins.empty())
      throw UserError("skip: module '" + module + "' has no site '" + (outs.empty() ? outName : s.siteNames.at(in)) +
                      "' in this forward");
    for (size_t k = 0; k < outs.size(); ++k) outs[k]->replaceInput(0, ins[std::min(k, ins.size() - 1)]->output());
    inside.push_back(module + ".");
  }
  for (auto it = g.block()->nodes().begin(); it != g.block()->nodes().end();) {
    torch::jit::Node* n = *it;
    int id = siteIdOf(n);
    bool drop = false;
    if (id >= 0 && id < (int)s.siteNames.size())
      for (const auto& p : inside) drop = drop || s.siteNames[id].compare(0, p.size(), p) == 0;
    if (drop) {
      n->output()->replaceAllUsesWith(n->input(0));
      it.destroyCurrent();
    } else {
      ++it;
    }
  }
}

std::shared_ptr<torch::jit::GraphFunction> editedForward(ModelState& s, ForwardGraphs& f, const std::vector<char>& keep,
                                                         bool allHooks, const GraphEdits& edits) {
  if (!f.graph)
    throw UserError("operations inside modules (.source) and skip() need the inlined forward graph, which TORCHSIGHT_INLINE=0 turns off");
  std::vector<char> k = keep;
  if (allHooks) std::fill(k.begin(), k.begin() + std::min(k.size(), s.hookSites), 1);
  std::string key{f.kind, 'e'};
  auto put = [&](int32_t v) { key.append(reinterpret_cast<const char*>(&v), sizeof v); };
  for (size_t i = 0; i < k.size(); ++i)
    if (k[i]) put((int32_t)i);
  put(-1);
  for (auto [o, i] : edits.skips) put(o), put(i);
  bool want = false;
  if (auto fn = s.editGraphs->find(key, false, want)) return fn;
  auto fn = siteGraph(*f.graph, f.kind == 's' ? "step_edited" : "forward_edited", &k, s.executor, [&](torch::jit::Graph& g) {
    insertOpSites(g, f, edits.ops);
    skipModules(g, s, edits.skips);
  });
  s.editGraphs->finish(key, fn);
  return fn;
}

void probeOpShapes(ModelState& s) {
  auto& f = s.forward;
  if (!f.graph || f.ops.empty()) return;
  try {
    const std::vector<char> none;
    auto fn = siteGraph(*f.graph, "probe", &none, torch::jit::ExecutorExecutionMode::SIMPLE, [&](torch::jit::Graph& g) {
      std::vector<torch::jit::Node*> nodes(g.block()->nodes().begin(), g.block()->nodes().end());
      std::vector<torch::jit::Value*> outs;
      for (const auto& op : f.ops) outs.push_back(nodes.at(op.node)->output());
      auto* tuple = g.insertNode(g.createTuple(outs))->output();
      g.eraseOutput(0);  // a function has one output: the ops' values in place of the model's
      g.registerOutput(tuple);
    });
    c10::InferenceMode guard;
    for (auto [b, t] : {std::pair<int64_t, int64_t>{1, 3}, {2, 5}}) {
      auto opts = at::TensorOptions().dtype(at::kLong).device(s.device);
      torch::jit::Stack st{f.module._ivalue(), at::zeros({b, t}, opts), at::ones({b, t}, opts),
                           at::arange(t, opts).unsqueeze(0).expand({b, t}).contiguous()};
      fn->run(st);
      const auto& items = st.back().toTupleRef().elements();
      for (size_t i = 0; i < f.ops.size() && i < items.size(); ++i)
        f.ops[i].shapes.push_back(items[i].isTensor() ? items[i].toTensor().sizes().vec() : std::vector<int64_t>{});
    }
  } catch (const std::exception& e) {
    if (std::getenv("TORCHSIGHT_DEBUG_PROBE")) fprintf(stderr, "probe: %s\n", e.what());
    for (auto& op : f.ops) op.shapes.clear();
  }
}

ForwardGraphs loadForward(torch::jit::Module& m, char kind, ModelState& s) {
  ForwardGraphs f;
  f.kind = kind;
  f.module = m;
  // TORCHSIGHT_INLINE=0 runs the modules' own forward methods instead (for comparison)
  const char* inl = std::getenv("TORCHSIGHT_INLINE");
  if (inl && std::string(inl) == "0") return f;
  f.graph = inlinedGraph(m, s);
  listOps(f, m, s);
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

namespace {

// Builds a site graph (SiteGraphs) on libuv's pool; a graph that cannot be built is never tried
// again and the requests for it keep running the graph with every site.
class SiteGraphWorker : public Napi::AsyncWorker {
 public:
  SiteGraphWorker(Napi::Env env, SiteGraphBuild b) : Napi::AsyncWorker(env), b_(std::move(b)) {}
  void Execute() override {
    std::shared_ptr<torch::jit::GraphFunction> fn;
    try {
      fn = siteGraph(*b_.graph, b_.key[0] == 's' ? "step_sites" : "forward_sites", &b_.keep, torch::jit::ExecutorExecutionMode::SIMPLE);
    } catch (...) {
      fn = nullptr;
    }
    try {
      b_.cache->finish(b_.key, std::move(fn));
    } catch (...) {  // nothing may leave Execute; the entry then stays unbuilt
    }
  }

 private:
  SiteGraphBuild b_;
};

}  // namespace

// Queues the builds a request asked for (on the JS thread: a worker is queued from there).
// Never throws: the request has succeeded whatever happens to its builds.
void queueSiteGraphs(Napi::Env env, std::vector<SiteGraphBuild>& builds) {
  for (auto& b : builds) {
    if (!b.cache->claim(b.key)) continue;
    auto cache = b.cache;
    std::string key = b.key;
    try {
      (new SiteGraphWorker(env, std::move(b)))->Queue();
    } catch (...) {
      try {
        cache->finish(key, nullptr);
      } catch (...) {
      }
    }
  }
  builds.clear();
}

}  // namespace ts
