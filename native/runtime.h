// The model state, the thread-local context seen by the hook op, and the intervention
// graph (parsed in request.cpp, run inside the forward by interpreter.cpp at model.cpp's hook op).
#pragma once
#include "common.h"

namespace ts {

// How to apply a module to new values without firing its sites (from the manifest).
struct ApplyRule {
  std::string kind;  // linear, layer_norm, embedding, conv1d, rms_norm, act, identity, method
  double eps = 1e-5;
  std::string fn;    // for act
};

// One forward of the model (model.pt's, or step.pt's key/value-cache step) as graphs built at
// load (model.cpp's loadForward): its forward inlined into one graph (submodule calls become
// their bodies), run with every hook site, or with none for forwards no intervention touches
// (that one costs what an export without sites does). Null graphs with TORCHSIGHT_INLINE=0:
// the module's own forward method runs.
struct ForwardGraphs {
  char kind = 'f';  // 'f' model.pt, 's' step.pt: the first byte of a SiteGraphs key
  torch::jit::Module module;
  std::shared_ptr<torch::jit::Graph> graph;  // the inlined graph, every site (as site ops, by id); never changed once built
  std::shared_ptr<torch::jit::GraphFunction> withSites, plain;
};

// Forwards keeping only the sites a request uses (~350 hook calls on a 12-layer GPT-2 become
// the dozen a trace reads), so a trace repeated in a loop pays only for its own sites. Built off
// the request path: the second request asking for a set of sites queues a build on the libuv
// pool (workers.cpp), one build at a time, and later requests run it once it is ready; the least
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
// compiled for `mode` (model.cpp); `graph` is only read, so builds may run beside forwards.
std::shared_ptr<torch::jit::GraphFunction> siteGraph(torch::jit::Graph& graph, const std::string& name,
                                                     const std::vector<char>* keep, torch::jit::ExecutorExecutionMode mode);

struct ModelState {
  torch::jit::Module module;
  c10::Device device{c10::kCPU};
  c10::ScalarType dtype = at::kFloat;
  std::unordered_map<std::string, int> siteIds;  // interned at load
  std::vector<std::string> siteNames;
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
  std::mutex mu;  // one forward at a time per model
  // The submodule at a dotted path; throws UserError when missing.
  torch::jit::Module submodule(const std::string& path) const;
};

// ---- graph ----------------------------------------------------------------------------
// An argument: a constant, a reference to an earlier node, or a list mixing both.
struct Arg {
  int ref = -1;
  c10::IValue value;
  bool isList = false;
  std::vector<Arg> items;
};

enum class NodeKind { Read, Write, Apply, Op };

struct Node {
  int id = 0;
  std::string op;
  NodeKind kind = NodeKind::Op;
  const OpDef* def = nullptr;
  std::vector<Arg> args;
  int site = -1;  // site id for Read/Write
  int occ = 0;    // which call of the site (a module called twice fires twice)
  int invoke = -1;
  int trace = 0;
  std::string loc;
  bool save = false;
  int stepBegin = 0, stepEnd = 1;  // generation steps it applies at; end -1: every step
  bool multiStep() const { return stepEnd != stepBegin + 1; }
  std::vector<int> deps;  // referenced node ids
};

struct Trace {
  at::Tensor ids, mask, pos;              // [batch, seq] int64
  std::vector<std::pair<int64_t, int64_t>> invokes;  // rows (start, count)
  int begin = 0, end = 0;                 // node range
  bool stop = false;
};

// The request's cancel flag, an Int32Array on a SharedArrayBuffer that JS sets
// (src/native.ts names the same values).
enum class CancelFlag : int32_t {
  Running = 0,
  Abort = 1,  // an AbortSignal fired: throws at the next site, or before the next forward
  Stop = 2,   // generation saw a stop string: no step after this one
};

struct Request {
  std::vector<Trace> traces;
  std::vector<Node> nodes;
  bool recordSites = false;
  bool returnLogits = false;  // the last trace's logits back to JS (only forwardRaw asks: they can be large)
  // Cancellation: the CancelFlag JS sets (null when the request has none). Checked at every
  // site, so a running forward stops at the next module.
  const int32_t* cancel = nullptr;
  CancelFlag cancelFlag() const {
    return cancel ? static_cast<CancelFlag>(__atomic_load_n(cancel, __ATOMIC_RELAXED)) : CancelFlag::Running;
  }
  bool cancelled() const { return cancelFlag() == CancelFlag::Abort; }
};

// Thrown when the request's cancel flag is set.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("torchsight: aborted") {}
};

// Parses and validates a whole request from its JS form (on the JS thread).
Request parseRequest(const Napi::Object& req, const ModelState& model);

// Raised by the hook op to end a forward early (tracer.stop()).
struct StopForward : std::exception {
  const char* what() const noexcept override { return "torchsight: forward stopped"; }
};

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

// Runs a request: one forward per trace with the graph's nodes executed at their sites.
class Interpreter {
 public:
  Interpreter(ModelState& m, Request& r);
  void run();  // on the worker thread, model lock held
  // Generation from trace 0's prompt: one forward per step (the cache step graph when there
  // is one), nodes running at the steps they are scoped to. onStep gets each step's tokens.
  void generate(const GenOptions& o, const std::function<void(int, const std::vector<int64_t>&)>& onStep);
  std::vector<std::vector<int64_t>> tokens;  // generated, per row
  int stepsRun = 0;
  bool usedCache = false;
  // Called by the hook op.
  void fire(int site, c10::IValue& x);
  std::vector<std::pair<int, c10::IValue>> saved() const;
  at::Tensor logits;                       // element 0 of the last forward's output
  std::vector<std::string> firedSites;     // when recordSites
  std::string error;                       // the real error when a forward threw
  std::vector<SiteGraphBuild> builds;      // site graphs this request asked for a second time

 private:
  void runReady();
  bool active(const Node& n, int step) const;
  c10::IValue forwardStep(int ti, int step, ForwardGraphs& f, std::vector<c10::IValue> inputs);
  std::shared_ptr<torch::jit::GraphFunction> siteGraphFor(ForwardGraphs& f);
  c10::IValue resolve(const Arg& a) const;
  void exec(Node& n, c10::IValue* live);
  [[noreturn]] void fail(const Node& n, const std::string& msg);
  c10::IValue apply(const Node& n, std::vector<c10::IValue>& args);
  at::Tensor rows(const Node& n, const at::Tensor& x) const;
  ModelState& m_;
  Request& r_;
  std::vector<c10::IValue> values_;
  std::vector<std::vector<c10::IValue>> steps_;  // per-step values of nodes saved over several steps
  std::vector<char> done_;
  std::vector<int64_t> aliasEvent_;  // event during which the aliased activation was live; -1 none
  std::vector<int> counts_;          // calls of each site in this forward
  std::vector<char> interest_;       // sites with nodes waiting in this trace
  std::vector<int> pending_;
  std::vector<std::string> siteKeys_;  // site-graph keys this request has counted
  int trace_ = 0;
  int64_t event_ = 0;
  int64_t batch_ = 0;
  int remaining_ = 0;
  bool stopped_ = false;
  bool generating_ = false;
};

// The context of the forward running on this thread, read by the hook op.
struct ForwardContext {
  ModelState* model = nullptr;
  Interpreter* interp = nullptr;
  int suppress = 0;  // > 0 while a module is applied by the graph (its sites stay quiet)
};
ForwardContext*& currentForward();

// Makes `interp` this thread's forward context while it lives: also for modules applied outside
// the forward (their sites stay quiet).
struct ContextScope {
  ForwardContext ctx;
  ForwardContext* prev;
  ContextScope(ModelState& m, Interpreter* interp) : prev(currentForward()) {
    ctx.model = &m;
    ctx.interp = interp;
    currentForward() = &ctx;
  }
  ~ContextScope() { currentForward() = prev; }
};

// Element 0 of a forward's output (the logits), or an undefined tensor.
at::Tensor firstTensor(const c10::IValue& out);

}  // namespace ts
