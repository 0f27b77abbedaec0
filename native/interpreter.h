// The interpreter: runs a request's nodes inside the forward, at the sites they read or write,
// and the context the hook ops find it through (interpreter.cpp; generation in generate.cpp).
#pragma once
#include "model_state.h"
#include "request.h"

namespace ts {

struct GenOptions;

// Raised by the hook op to end a forward early (tracer.stop()).
struct StopForward : std::exception {
  const char* what() const noexcept override { return "torchsight: forward stopped"; }
};

// Runs a request: one forward per trace with the graph's nodes executed at their sites.
class Interpreter {
 public:
  Interpreter(ModelState& m, Request& r);
  void run();  // on the worker thread, model lock held
  // Generation from trace 0's prompt (generate.cpp): one forward per step (the cache step graph when there
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
  void write(const Node& n, const Node* rowsOf, const c10::IValue& v, c10::IValue* live);
  // Gradients (autograd.cpp): a trace with a .backward() runs its forward with autograd, then
  // the backward, its .grad nodes running as the backward reaches their values.
  c10::IValue gradTrace(int ti);
  void prepareGrad(int ti);
  void requireGrad(c10::IValue& x);
  void hookSite(int site, int occ, c10::IValue& x);
  void hookValue(const Node& n);
  void hook(at::Tensor& x, std::vector<int> targets);
  at::Tensor onGrad(const std::vector<int>& targets, const at::Tensor& g);
  void runBackward(int ti);
  std::string gradName(const Node& target) const;
  bool grad_ = false;                  // the running trace has a .backward()
  std::vector<char> needsGrad_;        // by site: its value must require grad (a .grad depends on it)
  std::vector<char> hookSite_;         // by site: a read of it has a .grad
  std::vector<char> gradTarget_;       // by node: some .grad names it
  std::vector<std::pair<int, at::Tensor>> metrics_;  // Backward node, its metric
  int afterForward_ = 0;               // nodes that need a gradient: they run in the backward
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
