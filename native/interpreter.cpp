// The interpreter: a request's nodes run inside the forward, each at the call of the site it
// reads or writes (fire, from the hook ops), ops and module applications as soon as their inputs
// are ready; a value is checked at every step that could go wrong and the error names the node.
#include "interpreter.h"

namespace ts {

ForwardContext*& currentForward() {
  thread_local ForwardContext* ctx = nullptr;
  return ctx;
}

at::Tensor firstTensor(const c10::IValue& out) {
  if (out.isTuple() && !out.toTupleRef().elements().empty() && out.toTupleRef().elements()[0].isTensor())
    return out.toTupleRef().elements()[0].toTensor();
  if (out.isTensor()) return out.toTensor();
  return at::Tensor();
}

Interpreter::Interpreter(ModelState& m, Request& r) : m_(m), r_(r) {
  values_.resize(r.nodes.size());
  steps_.resize(r.nodes.size());
  done_.assign(r.nodes.size(), 0);
  aliasEvent_.assign(r.nodes.size(), -1);
}

c10::IValue Interpreter::resolve(const Arg& a) const {
  if (a.ref >= 0) return values_[a.ref];
  if (!a.isList) return a.value;
  std::vector<c10::IValue> items;
  for (const auto& x : a.items) items.push_back(resolve(x));
  return listValue(std::move(items));
}

void Interpreter::fail(const Node& n, const std::string& msg) {
  std::string m = msg;
  // runOp prefixes messages with the op name: put the user's location right after it.
  std::string prefix = n.op + ": ";
  if (m.rfind(prefix, 0) == 0) m = m.substr(prefix.size());
  error = n.op + (n.loc.empty() ? "" : " at " + n.loc) + ": " + m;
  throw UserError(error);
}

// The rows of an invoke (a view); the whole tensor when the trace has one invoke or the
// value is not batched.
at::Tensor Interpreter::rows(const Node& n, const at::Tensor& x) const {
  const Trace& tr = r_.traces[n.trace];
  if (n.invoke < 0 || tr.invokes.size() <= 1 || x.dim() == 0 || x.size(0) != batch_) return x;
  auto [s, c] = tr.invokes[n.invoke];
  return x.narrow(0, s, c);
}

c10::IValue Interpreter::apply(const Node& n, std::vector<c10::IValue>& args) {
  const auto& path = args[0].toStringRef();
  const ApplyRule& rule = m_.applyRules.at(path);
  auto sub = m_.submodule(path);
  auto param = [&](const char* name) -> at::Tensor {
    if (!sub.hasattr(name)) return at::Tensor();
    auto v = sub.attr(name);
    return v.isTensor() ? v.toTensor() : at::Tensor();
  };
  if (rule.kind == "method") {
    std::vector<c10::IValue> in(args.begin() + 1, args.end());
    currentForward()->suppress++;
    try {
      auto out = sub.forward(in);
      currentForward()->suppress--;
      return out;
    } catch (...) {
      currentForward()->suppress--;
      throw;
    }
  }
  if (args.size() != 2 || !args[1].isTensor()) fail(n, "module '" + path + "' takes one tensor");
  at::Tensor x = args[1].toTensor();
  if (x.device() != m_.device) x = x.to(m_.device);
  at::Tensor w = param("weight"), b = param("bias");
  if (rule.kind == "linear") {
    if (x.size(-1) != w.size(1)) fail(n, "'" + path + "' expects a last dimension of " + std::to_string(w.size(1)) + ", got shape " + shapeString(x.sizes()));
    return at::linear(x.to(w.scalar_type()), w, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt);
  }
  if (rule.kind == "conv1d") {
    if (x.size(-1) != w.size(0)) fail(n, "'" + path + "' expects a last dimension of " + std::to_string(w.size(0)) + ", got shape " + shapeString(x.sizes()));
    auto y = at::matmul(x.to(w.scalar_type()), w);
    return b.defined() ? y + b : y;
  }
  if (rule.kind == "layer_norm") {
    if (x.size(-1) != w.size(0)) fail(n, "'" + path + "' expects a last dimension of " + std::to_string(w.size(0)) + ", got shape " + shapeString(x.sizes()));
    return at::layer_norm(x.to(w.scalar_type()), w.sizes(), w, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt, rule.eps);
  }
  if (rule.kind == "rms_norm") {
    if (x.size(-1) != w.size(0)) fail(n, "'" + path + "' expects a last dimension of " + std::to_string(w.size(0)) + ", got shape " + shapeString(x.sizes()));
    auto xf = x.to(at::kFloat);
    auto y = xf * at::rsqrt(xf.pow(2).mean({-1}, true) + rule.eps);
    return w * y.to(x.scalar_type());
  }
  if (rule.kind == "embedding") {
    if (at::isFloatingType(x.scalar_type())) fail(n, "'" + path + "' takes integer token ids");
    bool values = x.numel() && !x.is_meta();  // a scan's ids have no values to check
    auto mn = values ? x.min().item<int64_t>() : 0, mx = values ? x.max().item<int64_t>() : 0;
    if (mn < 0 || mx >= w.size(0)) fail(n, "'" + path + "': ids must be in [0, " + std::to_string(w.size(0)) + ")");
    return at::embedding(w, x.to(at::kLong));
  }
  if (rule.kind == "act") {
    if (rule.fn == "gelu_new" || rule.fn == "gelu_pytorch_tanh")
      return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * at::pow(x, 3.0))));
    if (rule.fn == "gelu") return at::gelu(x);
    if (rule.fn == "silu") return at::silu(x);
    if (rule.fn == "relu") return at::relu(x);
    if (rule.fn == "tanh") return at::tanh(x);
    fail(n, "unknown activation '" + rule.fn + "'");
  }
  if (rule.kind == "identity") return x;
  fail(n, "module '" + path + "' has apply kind '" + rule.kind + "', which cannot run");
}

// Writes `v` (node n's value) into the live value `*live` (an activation, or a gradient), in
// the rows of `rowsOf`'s invoke (all of it when null).
void Interpreter::write(const Node& n, const Node* rowsOf, const c10::IValue& v, c10::IValue* live) {
  at::Tensor x = live->toTensor();
  at::Tensor target = rowsOf ? rows(*rowsOf, x) : x;
  at::Tensor nv;
  if (v.isInt() || v.isDouble() || v.isBool()) {
    nv = at::full_like(target, v.isBool() ? c10::Scalar(v.toBool()) : v.isInt() ? c10::Scalar(v.toInt()) : c10::Scalar(v.toDouble()));
  } else if (v.isTensor()) {
    nv = v.toTensor().to(x.device(), x.scalar_type());
    if (!nv.sizes().equals(target.sizes())) {
      if (!at::is_expandable_to(nv.sizes(), target.sizes()))
        fail(n, "cannot replace a value of shape " + shapeString(target.sizes()) + " with shape " + shapeString(nv.sizes()));
      nv = nv.expand(target.sizes()).contiguous();
    }
  } else {
    fail(n, "can only write a tensor or a number, got " + describe(v));
  }
  if (target.is_same(x) || target.numel() == x.numel()) {
    *live = c10::IValue(nv);
  } else {  // one invoke's rows of a shared batch: write into a copy of the batch
    at::Tensor y = x.clone();
    rows(*rowsOf, y).copy_(nv);
    *live = c10::IValue(y);
  }
}

void Interpreter::exec(Node& n, c10::IValue* live) {
  try {
    switch (n.kind) {
      case NodeKind::Read:
        values_[n.id] = rows(n, live->toTensor());
        aliasEvent_[n.id] = event_;
        break;
      case NodeKind::Write:
        write(n, &n, resolve(n.args[0]), live);
        break;
      case NodeKind::GradRead:  // the rows of the gradient of the value it names (autograd.cpp)
        values_[n.id] = r_.nodes[n.gradOf].kind == NodeKind::Read ? rows(r_.nodes[n.gradOf], live->toTensor()) : live->toTensor();
        aliasEvent_[n.id] = event_;
        break;
      case NodeKind::GradWrite:
        // a read's gradient is its invoke's rows of the site's; a computed value's is its own
        write(n, r_.nodes[n.gradOf].kind == NodeKind::Read ? &r_.nodes[n.gradOf] : nullptr, resolve(n.args[1]), live);
        break;
      case NodeKind::Backward: {
        c10::IValue v = resolve(n.args[0]);
        if (!v.isTensor() || v.toTensor().numel() != 1 || !at::isFloatingType(v.toTensor().scalar_type()))
          fail(n, "the metric must be a floating-point scalar (one element: reduce it with .sum(), .mean() or .index()), got " + describe(v));
        metrics_.emplace_back(n.id, v.toTensor());
        break;
      }
      case NodeKind::Skip:  // handled by forwardStep
        break;
      case NodeKind::Apply: {
        std::vector<c10::IValue> args;
        for (const auto& a : n.args) args.push_back(resolve(a));
        values_[n.id] = apply(n, args);
        if (grad_ && gradTarget_[n.id]) hookValue(n);
        break;
      }
      case NodeKind::Op: {
        std::vector<c10::IValue> args;
        for (const auto& a : n.args) args.push_back(resolve(a));
        int self = n.args[0].ref;
        if (n.def->inplace && self >= 0 && aliasEvent_[self] >= 0 && aliasEvent_[self] != event_)
          fail(n, "changes an activation in place after the forward has moved past its module: a value it needs "
                  "comes from a module that runs later (move the read of that value before, or use a separate trace)");
        values_[n.id] = runOp(*n.def, args);
        if (n.def->view && self >= 0) aliasEvent_[n.id] = aliasEvent_[self];
        if (grad_ && gradTarget_[n.id]) hookValue(n);
        break;
      }
    }
  } catch (const UserError& e) {
    if (error.empty()) fail(n, e.what());
    throw;
  } catch (const std::exception& e) {
    fail(n, errorMessage(e));
  }
  done_[n.id] = 1;
  remaining_--;
}

// Runs every pending node that needs no site and whose inputs are ready.
void Interpreter::runReady() {
  std::vector<int> still;
  for (int i : pending_) {
    Node& n = r_.nodes[i];
    bool ready = !atEvent(n.kind);
    for (int d : n.deps) ready = ready && done_[d];
    if (ready) exec(n, nullptr);
    else still.push_back(i);
  }
  pending_.swap(still);
}

void Interpreter::fire(int site, c10::IValue& x) {
  event_++;
  if (r_.cancelled()) {
    error = "aborted";
    throw Cancelled();
  }
  if (r_.recordSites) firedSites.push_back(m_.siteNames[site]);
  int occ = counts_[site]++;
  if (!interest_[site] || !x.isTensor()) return;
  if (grad_ && needsGrad_[site]) requireGrad(x);  // before its reads: what they compute then requires grad too
  // pending_ is compacted in place (no allocation at every interesting site); exec never
  // touches pending_, so the write index can trail the read index safely
  size_t keep = 0;
  for (size_t k = 0; k < pending_.size(); ++k) {
    int i = pending_[k];
    Node& n = r_.nodes[i];
    bool atSite = n.kind == NodeKind::Read || n.kind == NodeKind::Write;
    if ((atSite && (n.site != site || n.occ != occ)) || atGrad(n.kind)) {
      pending_[keep++] = i;
      continue;
    }
    bool ready = true;
    for (int d : n.deps) ready = ready && done_[d];
    if (!ready) {
      if (atSite)
        fail(n, "the value written at '" + m_.siteNames[site] +
                    "' depends on a module that runs later in the forward; it is not ready yet");
      pending_[keep++] = i;
      continue;
    }
    exec(n, &x);
  }
  pending_.resize(keep);
  if (grad_ && hookSite_[site]) hookSite(site, occ, x);  // on the value that flows on
  if (r_.traces[trace_].stop && remaining_ == afterForward_) {  // what is left waits for the backward
    stopped_ = true;  // the JIT may wrap what we throw; this flag says it was a stop
    throw StopForward();
  }
}

bool Interpreter::active(const Node& n, int step) const {
  return step >= n.stepBegin && (n.stepEnd < 0 || step < n.stepEnd);
}

// The site graph for this forward's sites of interest, when built (see SiteGraphs); a second
// request for the same sites also records a build for its worker to queue.
std::shared_ptr<torch::jit::GraphFunction> Interpreter::siteGraphFor(ForwardGraphs& f) {
  if (!f.graph) return nullptr;
  std::string key(1, f.kind);
  for (size_t i = 0; i < interest_.size(); ++i) {
    if (!interest_[i]) continue;
    int32_t id = (int32_t)i;
    key.append(reinterpret_cast<const char*>(&id), sizeof id);
  }
  bool want = false;
  bool newRequest = std::find(siteKeys_.begin(), siteKeys_.end(), key) == siteKeys_.end();
  if (newRequest) siteKeys_.push_back(key);
  auto fn = m_.siteGraphs->find(key, newRequest, want);
  if (want && newRequest) builds.push_back(SiteGraphBuild{key, f.graph, interest_, m_.siteGraphs});  // once per key
  return fn;
}

// One forward of trace `ti` at generation step `step` (0 for a plain trace): the nodes active
// at that step run at their sites; returns the forward's output (None when stopped early).
c10::IValue Interpreter::forwardStep(int ti, int step, ForwardGraphs& f, std::vector<c10::IValue> inputs) {
  Trace& tr = r_.traces[ti];
  trace_ = ti;
  batch_ = inputs[0].toTensor().size(0);
  if (r_.cancelled()) {
    error = "aborted";
    throw Cancelled();
  }
  std::fill(counts_.begin(), counts_.end(), 0);
  std::fill(interest_.begin(), interest_.end(), 0);
  pending_.clear();
  remaining_ = 0;
  GraphEdits edits;  // op sites (.source) and skipped modules: a graph edited for them
  for (int i = tr.begin; i < tr.end; ++i) {
    Node& n = r_.nodes[i];
    if (!active(n, step)) continue;
    if (n.kind == NodeKind::Skip) {  // no value: it only shapes the graph
      if (tr.invokes.size() <= 1) edits.skips.emplace_back(n.site, n.from);
      done_[i] = 1;
      continue;
    }
    if (step > n.stepBegin) {  // a node of several steps runs anew at each
      done_[i] = 0;
      values_[i] = c10::IValue();
      aliasEvent_[i] = -1;
    }
    pending_.push_back(i);
    remaining_++;
    if (n.site >= 0) {
      if ((size_t)n.site >= m_.hookSites && !interest_[n.site]) edits.ops.push_back(n.site);  // an op site (.source)
      interest_[n.site] = 1;
    }
  }
  runReady();  // nodes that need no site (ops on tensors passed in)
  bool stopped = false;
  stopped_ = false;
  c10::IValue out;
  // Unless a site list or a cancel check at every module is asked for, the forward need not
  // call every site: with nothing waiting at a site, the graph without sites does the same work
  // without ~30 hook calls a layer; otherwise a graph keeping only the sites waited at, once
  // built. Generation always carries a cancel flag (stop strings use it too): there an abort
  // ends at the next step, or the next site kept.
  bool quiet = !r_.recordSites && (!r_.cancel || generating_);
  if (remaining_ > 0 || !tr.stop) {
    try {
      torch::jit::GraphFunction* fn = f.withSites.get();
      std::shared_ptr<torch::jit::GraphFunction> special;  // held while it runs (the cache may drop it)
      if (!edits.empty()) fn = (special = editedForward(m_, f, interest_, !quiet, edits)).get();
      else if (quiet && remaining_ == 0 && f.plain) fn = f.plain.get();
      else if (quiet && m_.siteGraphs && (special = siteGraphFor(f))) fn = special.get();
      if (fn) {
        inputs.insert(inputs.begin(), f.module._ivalue());
        out = (*fn)(std::move(inputs));
      } else {
        out = f.module.forward(inputs);
      }
    } catch (const StopForward&) {
      stopped = true;
    } catch (const std::exception& e) {
      if (!error.empty()) throw UserError(error);
      if (stopped_) stopped = true;
      else throw UserError("forward failed: " + errorMessage(e));
    }
    if (stopped_) stopped = true;
  } else {
    stopped = true;
  }
  runReady();
  for (int i : pending_) {
    const Node& n = r_.nodes[i];
    bool depsDone = true;
    for (int d : n.deps) depsDone = depsDone && done_[d];
    if (!depsDone || atGrad(n.kind)) continue;  // an earlier node is the cause; gradients come in the backward
    if (n.site >= 0) {
      int c = counts_[n.site];
      std::string why = stopped ? "the trace stopped before it"
                        : c == 0 ? "the module never ran (or its value was unused and pruned by the export)"
                                 : "it fired " + std::to_string(c) + " time(s), call " + std::to_string(n.occ) + " does not exist";
      fail(n, "site '" + m_.siteNames[n.site] + "' never fired" + (step ? " at step " + std::to_string(step) : "") + ": " + why);
    }
    fail(n, "could not run");
  }
  for (int i = tr.begin; i < tr.end; ++i) {
    const Node& n = r_.nodes[i];
    if (active(n, step) && n.save && n.multiStep()) steps_[i].push_back(values_[i]);
    // activations of this forward are plain tensors from now on
    aliasEvent_[i] = -1;
  }
  return out;
}

void Interpreter::run() {
  counts_.assign(m_.siteNames.size(), 0);
  interest_.assign(m_.siteNames.size(), 0);
  ContextScope scope(m_, this);
  for (size_t ti = 0; ti < r_.traces.size(); ++ti) {
    Trace& tr = r_.traces[ti];
    auto dev = m_.device;
    logits = firstTensor(tr.backward >= 0 ? gradTrace((int)ti)
                                          : forwardStep((int)ti, 0, m_.forward, {tr.ids.to(dev), tr.mask.to(dev), tr.pos.to(dev)}));
  }
}

std::vector<std::pair<int, c10::IValue>> Interpreter::saved() const {
  std::vector<std::pair<int, c10::IValue>> out;
  for (const auto& n : r_.nodes) {
    if (!n.save) continue;
    if (n.multiStep()) {  // one value per step it ran at
      c10::impl::GenericList l(c10::AnyType::get());
      for (const auto& v : steps_[n.id]) l.push_back(v);
      out.emplace_back(n.id, c10::IValue(l));
    } else if (done_[n.id]) {
      out.emplace_back(n.id, values_[n.id]);
    }
  }
  return out;
}

}  // namespace ts
