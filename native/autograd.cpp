// Gradients: a trace with a .backward() runs its forward with autograd recording (every other
// trace runs under InferenceMode), then one backward pass from its metrics. A `.grad` is a tensor
// hook on the value it names; its nodes (and what depends on them) run when autograd reaches
// that value, and what the hook returns flows on upstream, so `.grad = v` changes earlier grads.
#include "interpreter.h"
#include <torch/csrc/autograd/autograd.h>

namespace ts {
namespace {

// A normal tensor for one made under InferenceMode (a constant from JS, a value of an earlier
// trace): autograd may not save those for its backward.
c10::IValue normal(const c10::IValue& v) {
  if (v.isTensor()) return v.toTensor().is_inference() ? c10::IValue(v.toTensor().clone()) : v;
  if (v.isList()) {
    std::vector<c10::IValue> items;
    for (const auto& x : v.toListRef()) items.push_back(normal(x));
    return listValue(std::move(items));
  }
  if (v.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& x : v.toTupleRef().elements()) items.push_back(normal(x));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  return v;
}

// The value cut from autograd: what the trace keeps after its backward holds no graph.
c10::IValue detached(const c10::IValue& v) {
  if (v.isTensor()) return v.toTensor().detach();
  if (v.isList()) {
    std::vector<c10::IValue> items;
    for (const auto& x : v.toListRef()) items.push_back(detached(x));
    return listValue(std::move(items));
  }
  if (v.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& x : v.toTupleRef().elements()) items.push_back(detached(x));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  return v;
}

// A site as the user wrote it: 'transformer.h.2:output:0' -> 'transformer.h.2.output[0]'.
std::string userSite(const std::string& site) {
  size_t colon = site.find(':');
  if (colon == std::string::npos) return site;
  std::string out = colon ? site.substr(0, colon) + "." : "model.";
  size_t next = site.find(':', colon + 1);
  std::string kind = site.substr(colon + 1, next == std::string::npos ? std::string::npos : next - colon - 1);
  out += kind == "input" ? "inputs" : kind;
  while (next != std::string::npos) {
    size_t end = site.find(':', next + 1);
    out += "[" + site.substr(next + 1, end == std::string::npos ? std::string::npos : end - next - 1) + "]";
    next = end;
  }
  return out;
}

}  // namespace

std::string Interpreter::gradName(const Node& t) const {
  if (t.kind == NodeKind::Read) return userSite(m_.siteNames[t.site]);
  return "the value of " + t.op + " at " + t.loc;
}

// Marks what the trace's gradients need: the sites whose values must require grad (a .grad's
// own site, or the sites a derived value is computed from) and the values to hook.
void Interpreter::prepareGrad(int ti) {
  const Trace& tr = r_.traces[ti];
  needsGrad_.assign(m_.siteNames.size(), 0);
  hookSite_.assign(m_.siteNames.size(), 0);
  gradTarget_.assign(r_.nodes.size(), 0);
  metrics_.clear();
  std::vector<char> seen(r_.nodes.size(), 0), late(r_.nodes.size(), 0);
  afterForward_ = 0;
  std::function<void(Arg&)> fix = [&](Arg& a) {
    if (a.ref >= 0 && r_.nodes[a.ref].trace < ti) values_[a.ref] = normal(values_[a.ref]);
    else if (a.ref < 0 && !a.isList) a.value = normal(a.value);
    for (auto& x : a.items) fix(x);
  };
  for (int i = tr.begin; i < tr.end; ++i) {
    Node& n = r_.nodes[i];
    for (auto& a : n.args) fix(a);
    late[i] = atGrad(n.kind);
    for (int d : n.deps) late[i] = late[i] || late[d];
    afterForward_ += late[i];
    if (!atGrad(n.kind)) continue;
    gradTarget_[n.gradOf] = 1;
    std::vector<int> stack{n.gradOf};
    while (!stack.empty()) {  // the reads the value is computed from
      int k = stack.back();
      stack.pop_back();
      if (seen[k] || r_.nodes[k].trace != ti) continue;
      seen[k] = 1;
      const Node& d = r_.nodes[k];
      if (d.kind == NodeKind::Read) needsGrad_[d.site] = 1;
      else stack.insert(stack.end(), d.deps.begin(), d.deps.end());
    }
    if (r_.nodes[n.gradOf].kind == NodeKind::Read) hookSite_[r_.nodes[n.gradOf].site] = 1;
  }
}

// Makes the live value require grad where nothing before it did (the weights do not, the
// inputs are token ids): a leaf, then a copy of it, so in-place changes at the site stay legal.
void Interpreter::requireGrad(c10::IValue& x) {
  const at::Tensor& t = x.toTensor();
  if (t.requires_grad() || !at::isFloatingType(t.scalar_type())) return;
  x = c10::IValue(t.detach().requires_grad_(true).clone());
}

void Interpreter::hook(at::Tensor& x, std::vector<int> targets) {
  x.register_hook([this, targets = std::move(targets)](const at::Tensor& g) { return onGrad(targets, g); });
}

// At the end of a site's call: the reads of it whose .grad is asked share one hook, on the
// value that flows on from the site (each read's gradient is its invoke's rows of it).
void Interpreter::hookSite(int site, int occ, c10::IValue& x) {
  std::vector<int> targets;
  const Trace& tr = r_.traces[trace_];
  for (int i = tr.begin; i < tr.end; ++i) {
    const Node& n = r_.nodes[i];
    if (n.kind == NodeKind::Read && n.site == site && n.occ == occ && gradTarget_[i] && done_[i]) targets.push_back(i);
  }
  if (targets.empty()) return;
  requireGrad(x);
  if (!x.toTensor().requires_grad()) {
    for (int i = tr.begin; i < tr.end; ++i)
      if (atGrad(r_.nodes[i].kind) && r_.nodes[i].gradOf == targets[0])
        fail(r_.nodes[i], gradName(r_.nodes[targets[0]]) + " holds " + describe(x) + ", which has no gradient");
  }
  at::Tensor t = x.toTensor();
  hook(t, std::move(targets));
}

// A computed value whose .grad is asked: hooked as it is made.
void Interpreter::hookValue(const Node& n) {
  c10::IValue& v = values_[n.id];
  if (v.isTensor()) requireGrad(v);
  if (!v.isTensor() || !v.toTensor().requires_grad())
    fail(n, "its .grad is read, but it is " + describe(v) + ", which has no gradient");
  at::Tensor t = v.toTensor();
  hook(t, {n.id});
}

// Autograd reached a hooked value with gradient `g`: the .grad nodes of `targets` run, then
// every node that was waiting only for them; the (maybe replaced) gradient flows on.
at::Tensor Interpreter::onGrad(const std::vector<int>& targets, const at::Tensor& g) {
  ContextScope scope(m_, this);  // autograd may call from its own thread (CUDA)
  event_++;
  c10::IValue live(g.clone());  // its own memory: an in-place change must not reach g's other users
  size_t keep = 0;
  for (size_t k = 0; k < pending_.size(); ++k) {
    int i = pending_[k];
    Node& n = r_.nodes[i];
    bool here = atGrad(n.kind) && std::find(targets.begin(), targets.end(), n.gradOf) != targets.end();
    if (atEvent(n.kind) && !here) {
      pending_[keep++] = i;
      continue;
    }
    bool ready = true;
    for (int d : n.deps) ready = ready && done_[d];
    if (!ready) {
      if (here) fail(n, "the gradient written for " + gradName(r_.nodes[n.gradOf]) + " depends on a gradient the backward has not reached yet");
      pending_[keep++] = i;
      continue;
    }
    exec(n, &live);
  }
  pending_.resize(keep);
  return live.toTensor();
}

// After the forward: one backward pass from the trace's metrics (summed: each invoke's metric
// reaches only its own rows, so its gradients are those of its prompt alone).
void Interpreter::runBackward(int ti) {
  const Trace& tr = r_.traces[ti];
  runReady();
  std::vector<at::Tensor> roots, ones;
  for (const auto& [id, metric] : metrics_) {
    if (!metric.requires_grad()) {
      std::string names;
      for (int i = tr.begin; i < tr.end; ++i)
        if (atGrad(r_.nodes[i].kind) && names.find(gradName(r_.nodes[r_.nodes[i].gradOf])) == std::string::npos)
          names += (names.empty() ? "" : ", ") + gradName(r_.nodes[r_.nodes[i].gradOf]) + " (.grad at " + r_.nodes[i].loc + ")";
      fail(r_.nodes[id], "the metric does not depend on " + names + ": compute it from a value downstream of them");
    }
    roots.push_back(metric);
    ones.push_back(at::ones_like(metric));
  }
  if (!roots.empty()) {
    try {
      torch::autograd::backward(roots, ones, /*retain_graph=*/false, /*create_graph=*/false);
    } catch (const std::exception& e) {
      if (!error.empty()) throw UserError(error);
      throw UserError("backward failed: " + errorMessage(e));
    }
  }
  runReady();
  for (int i : pending_) {
    const Node& n = r_.nodes[i];
    bool depsDone = true;
    for (int d : n.deps) depsDone = depsDone && done_[d];
    if (!depsDone) continue;  // an earlier node is the cause
    if (atGrad(n.kind))
      fail(n, "the metric does not depend on " + gradName(r_.nodes[n.gradOf]) + " (the backward never reached it)");
    fail(n, "could not run");
  }
}

// A trace with a .backward(): its forward with autograd, then the backward. Whatever happens,
// the trace's values are cut from autograd after, so no graph outlives it.
c10::IValue Interpreter::gradTrace(int ti) {
  Trace& tr = r_.traces[ti];
  c10::InferenceMode inference(false);
  c10::AutoGradMode enabled(true);
  for (auto p : m_.module.parameters())  // no weight gradients: only the values .grad names
    if (p.requires_grad()) p.requires_grad_(false);
  prepareGrad(ti);
  grad_ = true;
  auto dev = m_.device;
  c10::IValue out;
  auto end = [&] {
    grad_ = false;
    afterForward_ = 0;
    metrics_.clear();
    for (int i = tr.begin; i < tr.end; ++i) {
      values_[i] = detached(values_[i]);
      aliasEvent_[i] = -1;
    }
    out = detached(out);
  };
  try {
    // the inputs were made under InferenceMode (parseRequest): normal copies autograd may save
    out = forwardStep(ti, 0, m_.forward, {tr.ids.to(dev).clone(), tr.mask.to(dev).clone(), tr.pos.to(dev).clone()});
    runBackward(ti);
  } catch (...) {
    end();
    throw;
  }
  end();
  return out;
}

}  // namespace ts
