// The forward's graphs around its sites: the export's hook ops interned to ids and inlined as
// site ops at load, copies keeping only the sites a request uses, and the cache that builds
// those off the request path (site_graphs.cpp).
#pragma once
#include "common.h"

namespace ts {

struct ModelState;

// An operation of a module's own forward (`.source`): a tensor-valued aten:: node at the top
// level of the inlined graph, owned by the innermost module its inlined call stack names. Its
// sites (`<module>.source.<name>:output`, `...:input:<k>`) are interned with the hook sites
// but are in no graph built at load: a request that uses one runs a copy with a site op
// inserted at that node (editedForward), so they cost nothing to forwards that do not.
struct OpSite {
  std::string module, name, kind;  // module path ('' the root), 'softmax_0', 'aten::softmax'
  int node = 0;                    // ordinal among the graph's top-level nodes (copies keep the order)
  int output = -1;                 // site id of its output
  std::vector<int> inputs;         // site id of each input; -1 where it is not a tensor
  std::vector<std::vector<int64_t>> shapes;  // its output's shape in the probe forwards (probeOpShapes)
};

// One forward of the model (model.pt's, or step.pt's key/value-cache step) as graphs built at
// load (loadForward): its forward inlined into one graph (submodule calls become
// their bodies), run with every hook site, or with none for forwards no intervention touches
// (that one costs what an export without sites does). Null graphs with TORCHSIGHT_INLINE=0:
// the module's own forward method runs.
struct ForwardGraphs {
  char kind = 'f';  // 'f' model.pt, 's' step.pt: the first byte of a SiteGraphs key
  torch::jit::Module module;
  std::shared_ptr<torch::jit::Graph> graph;  // the inlined graph, every site (as site ops, by id); never changed once built
  std::shared_ptr<torch::jit::GraphFunction> withSites, plain;
  std::vector<OpSite> ops;               // in graph order
  std::unordered_map<int, int> opOfSite;  // op site id -> index in ops
};

// What a request changes in a forward's graph beyond the sites it keeps: op sites to insert and
// modules to skip (the uses of an output site's value rewired to an input site's value, the
// module's nodes left to dead-code elimination).
struct GraphEdits {
  std::vector<int> ops;                     // op site ids
  std::vector<std::pair<int, int>> skips;   // (output site id, input site id)
  bool empty() const { return ops.empty() && skips.empty(); }
};

// Forwards keeping only the sites a request uses (~350 hook calls on a 12-layer GPT-2 become
// the dozen a trace reads), so a trace repeated in a loop pays only for its own sites. Built off
// the request path: the second request asking for a set of sites queues a build on the libuv
// pool (SiteGraphWorker), one build at a time, and later requests run it once it is ready; the least
// recently used graph goes when more than `capacity` are kept. Keys: ForwardGraphs::kind then
// the site ids (int32s).
class SiteGraphs {
 public:
  explicit SiteGraphs(size_t capacity) : capacity_(capacity) {}
  // The built graph for `key` (its use counted) or null; `newRequest` counts a request (a
  // request's later forwards with the same sites, generation steps or a session's traces, do
  // not), and `want` says when this request should queue the build (see claim).
  std::shared_ptr<torch::jit::GraphFunction> find(const std::string& key, bool newRequest, bool& want);
  // On the JS thread: true when `key` should be built now (once per key; never two builds at once,
  // so a build does not hold a second libuv thread from the forwards; a key passed over is
  // wanted again at its next request).
  bool claim(const std::string& key);
  void finish(const std::string& key, std::shared_ptr<torch::jit::GraphFunction> fn);  // null: failed, never again
  struct Info { std::string key; bool ready; uint64_t uses; int siteOps; };
  std::vector<Info> info();

 private:
  struct Entry {
    std::shared_ptr<torch::jit::GraphFunction> fn;
    int requests = 0;
    bool building = false, failed = false;
    uint64_t lastUse = 0, uses = 0;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  size_t capacity_;
  uint64_t clock_ = 0;
  bool building_ = false;
};

// What a worker queues after its request: the graph of a forward keeping only some sites.
struct SiteGraphBuild {
  std::string key;
  std::shared_ptr<torch::jit::Graph> graph;  // ForwardGraphs::graph
  std::vector<char> keep;                    // by site id
  std::shared_ptr<SiteGraphs> cache;
};
// A copy of `graph` keeping the sites whose id `keep` marks (every site when keep is null),
// compiled for `mode`; `graph` is only read, so builds may run beside forwards. `edit`, when
// given, changes the copy before the sites are dropped.
std::shared_ptr<torch::jit::GraphFunction> siteGraph(torch::jit::Graph& graph, const std::string& name,
                                                     const std::vector<char>* keep, torch::jit::ExecutorExecutionMode mode,
                                                     const std::function<void(torch::jit::Graph&)>& edit = nullptr);

// The forward of a request that reads or writes op sites or skips modules: `f`'s graph with
// `edits`, keeping the hook sites `keep` marks (every hook site when `allHooks`), built on the
// calling thread the first time and cached (ModelState::editGraphs). Throws UserError when the
// forward has no inlined graph (TORCHSIGHT_INLINE=0) or a skipped module's sites are missing.
std::shared_ptr<torch::jit::GraphFunction> editedForward(ModelState& s, ForwardGraphs& f, const std::vector<char>& keep,
                                                         bool allHooks, const GraphEdits& edits);
// Runs model.pt's forward twice on small inputs ([1, 3] and [2, 5] tokens) to record each op's
// output shape for `String(...source)`; a model that cannot run them keeps no shapes.
void probeOpShapes(ModelState& s);

// Every site the export's graphs call (model.pt's and step.pt's), interned to ids in the order
// first seen.
void collectSites(ModelState& s);
// `m`'s forward as ForwardGraphs (the inlined graph, with every site and with none), its
// operations listed and their sites interned.
ForwardGraphs loadForward(torch::jit::Module& m, char kind, ModelState& s);
// Queues the builds a request asked for (on the JS thread, once the request is done).
// Never throws: the request has succeeded whatever happens to its builds.
void queueSiteGraphs(Napi::Env env, std::vector<SiteGraphBuild>& builds);

}  // namespace ts
