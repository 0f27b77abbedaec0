// model.scan: the request's graph run inside a forward whose weights, inputs and constants are
// meta tensors (sizes and dtypes, no data). Every op of the forward and of the intervention
// graph then computes only its output's shape and dtype, through the same kernels' shape checks
// as a real forward, so a shape error reads as it does in a trace; no weight is read.
#include "scan.h"
#include "worker.h"
#include <torch/csrc/jit/runtime/graph_executor.h>

namespace ts {
namespace {

using ObjectPtr = c10::intrusive_ptr<c10::ivalue::Object>;

// Shares what a model shares: a tensor tied in two places (GPT-2's wte and lm_head) becomes
// one meta tensor, a module object met twice one copy.
struct MetaMemo {
  std::unordered_map<const c10::TensorImpl*, at::Tensor> tensors;
  std::unordered_map<const c10::ivalue::Object*, ObjectPtr> objects;
};

at::Tensor metaTensor(const at::Tensor& t, MetaMemo& memo) {
  if (!t.defined() || t.is_meta()) return t;
  auto& m = memo.tensors[t.unsafeGetTensorImpl()];
  if (!m.defined()) m = at::empty_strided(t.sizes(), t.strides(), t.options().device(at::kMeta));
  return m;
}

// A shallow copy of a module object (same class type, so the inlined graph's attribute reads
// work on it) whose tensors are meta tensors; submodules are copied the same way.
ObjectPtr metaObject(const ObjectPtr& obj, MetaMemo& memo) {
  auto hit = memo.objects.find(obj.get());
  if (hit != memo.objects.end()) return hit->second;
  ObjectPtr out = obj->copy();
  memo.objects.emplace(obj.get(), out);
  for (size_t i = 0; i < out->slots().size(); ++i) {
    const c10::IValue& v = out->slots()[i];
    if (v.isTensor()) out->setSlot(i, metaTensor(v.toTensor(), memo));
    else if (v.isObject()) out->setSlot(i, metaObject(v.toObject(), memo));
  }
  return out;
}

// The graph's tensor constants (masks baked in by the tracer) made as meta tensors by an op
// each (empty_strided: no data), and its device constants the meta device, so nothing in the
// forward lands on the CPU (arange, zeros take their device from those). Not meta constants:
// the executor's passes read constants' values (CanonicalizeOps calls item(), constant pooling
// aten::equal), which meta tensors do not have.
void metaConstants(torch::jit::Block* b) {
  for (auto it = b->nodes().begin(); it != b->nodes().end();) {
    torch::jit::Node* node = *it;
    ++it;  // before node is destroyed
    for (auto* sub : node->blocks()) metaConstants(sub);
    if (node->kind() != c10::prim::Constant || !node->hasAttribute(c10::attr::value)) continue;
    auto kind = node->output()->type()->kind();
    if (kind == c10::TypeKind::DeviceObjType) {
      node->s_(c10::attr::value, "meta");
    } else if (kind == c10::TypeKind::TensorType && node->kindOf(c10::attr::value) == torch::jit::AttributeKind::t) {
      at::Tensor t = node->t(c10::attr::value);
      // a CPU scalar stays: ops take it beside meta tensors, and the tracer's size arithmetic
      // (NumToTensor, floor_divide by 2, Int) needs its value
      if (t.dim() == 0 && t.device().is_cpu()) continue;
      auto* g = node->owningGraph();
      torch::jit::WithInsertPoint at(node);
      auto* made = g->insert(c10::aten::empty_strided, {t.sizes().vec(), t.strides().vec()},
                             {torch::jit::NamedValue("dtype", t.scalar_type()), torch::jit::NamedValue("device", c10::Device(c10::kMeta))});
      node->output()->replaceAllUsesWith(made);
      node->destroy();
    }
  }
}

// The model as model.scan runs it: model.pt's inlined forward (every site) over the meta copy.
std::shared_ptr<ModelState> buildScanModel(const ModelState& s) {
  if (!s.forward.graph)
    throw UserError("model.scan needs the inlined forward graph, which TORCHSIGHT_INLINE=0 turns off");
  ensureMetaKernels();
  auto m = std::make_shared<ModelState>();
  MetaMemo memo;
  m->module = torch::jit::Module(metaObject(s.module._ivalue(), memo));
  m->device = c10::Device(c10::kMeta);
  m->dtype = s.dtype;
  m->siteIds = s.siteIds;
  m->siteNames = s.siteNames;
  m->hookSites = s.hookSites;  // ids past it are op sites (.source), which a scan refuses
  m->metaCopy = true;
  m->applyRules = s.applyRules;
  m->vocabSize = s.vocabSize;
  m->maxPositions = s.maxPositions;
  m->executor = torch::jit::ExecutorExecutionMode::SIMPLE;
  auto g = s.forward.graph->copy();
  metaConstants(g->block());
  m->forward.kind = 'f';
  m->forward.module = m->module;
  m->forward.graph = g;
  // Compiled without the graph executor's pre-optimization (a thread-local switch, on this
  // thread only while the plan is made): its constant pooling compares tensor constants with
  // aten::equal, which has no meta kernel. The graph is inlined already; meta ops cost nothing.
  struct NoOptimize {
    bool prev = torch::jit::getGraphExecutorOptimize();
    NoOptimize() { torch::jit::setGraphExecutorOptimize(false); }
    ~NoOptimize() { torch::jit::setGraphExecutorOptimize(prev); }
  } noOptimize;
  m->forward.withSites = siteGraph(*g, "scan", nullptr, m->executor);
  return m;
}

// The request's own tensors (values passed in from JS) on the meta device too.
void metaArg(Arg& a) {
  if (a.value.isTensor()) a.value = a.value.toTensor().to(at::kMeta);
  for (auto& x : a.items) metaArg(x);
}

// A scanned value for JS: {shape, dtype} for a tensor (with the tensor's device as a
// non-enumerable `device`, which says where it was computed), arrays for lists and tuples.
Napi::Value scannedToJs(Napi::Env env, const c10::IValue& v) {
  if (v.isTensor()) {
    const at::Tensor& t = v.toTensor();
    auto o = Napi::Object::New(env);
    auto shape = Napi::Array::New(env, t.dim());
    for (int64_t i = 0; i < t.dim(); ++i) shape.Set((uint32_t)i, Napi::Number::New(env, (double)t.size(i)));
    o.Set("shape", shape);
    o.Set("dtype", dtypeName(t.scalar_type()));
    o.DefineProperty(Napi::PropertyDescriptor::Value("device", Napi::String::New(env, deviceName(t.device())), napi_default));
    return o;
  }
  if (v.isTuple() || v.isList()) {
    auto items = v.isTuple() ? v.toTupleRef().elements().vec() : v.toListRef().vec();
    auto arr = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); ++i) arr.Set((uint32_t)i, scannedToJs(env, items[i]));
    return arr;
  }
  return ivalueToJs(env, v);  // numbers, booleans, strings, None
}

class ScanWorker : public Worker {
 public:
  ScanWorker(Napi::Env env, std::shared_ptr<ModelState> m, Request r, Napi::Value keep)
      : Worker(env), m_(std::move(m)), req_(std::move(r)) {
    if (keep.IsObject()) keep_ = Napi::Persistent(keep.As<Napi::Object>());
  }
  void work() override {
    std::lock_guard<std::mutex> lock(m_->mu);
    c10::InferenceMode guard;
    if (!m_->scanModel) m_->scanModel = buildScanModel(*m_);
    for (auto& n : req_.nodes)
      for (auto& a : n.args) metaArg(a);
    Interpreter interp(*m_->scanModel, req_);
    try {
      interp.run();
    } catch (const UserError& e) {
      // an op that reads values (item, data-dependent shapes): say why, not libtorch's dispatch table
      std::string msg = e.what();
      size_t at = msg.find("Could not run 'aten::_local_scalar_dense'");
      if (at == std::string::npos) at = msg.find("aten::_local_scalar_dense: attempted");
      if (at == std::string::npos) throw;
      throw UserError(msg.substr(0, at) + "needs a value, and model.scan has none (its tensors are shapes and dtypes only)");
    }
    saved_ = interp.saved();
  }
  Napi::Value result(Napi::Env env) override {
    std::vector<napi_value> items;
    for (const auto& [id, v] : saved_) {
      items.push_back(Napi::Number::New(env, id));
      items.push_back(scannedToJs(env, v));
    }
    auto out = Napi::Object::New(env);
    out.Set(key(env, Key::saved), arrayOf(env, items));
    saved_.clear();
    req_ = Request();
    return out;
  }

 private:
  std::shared_ptr<ModelState> m_;
  Request req_;
  std::vector<std::pair<int, c10::IValue>> saved_;
  Napi::ObjectReference keep_;
};

}  // namespace

Napi::Value queueScan(Napi::Env env, std::shared_ptr<ModelState> model, Request req, Napi::Value keep) {
  auto* w = new ScanWorker(env, std::move(model), std::move(req), keep);
  auto p = w->promise();
  w->Queue();
  return p;
}

}  // namespace ts
