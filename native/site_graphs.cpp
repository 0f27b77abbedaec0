// The forward's graphs around its sites: the export's hook ops interned and inlined as site ops
// at load, copies keeping only the sites a request uses, and the cache that builds those on
// libuv's pool (SiteGraphs, SiteGraphWorker).
#include "model_state.h"
#include "op_sites.h"
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

namespace ts {

static const c10::Symbol& hookKind() {
  static const auto k = c10::Symbol::fromQualString("torchsight::hook");
  return k;
}
const c10::Symbol& siteKind() {
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
