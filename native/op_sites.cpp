// Operations inside modules (`.source`) and skipped modules: what a module's own forward calls,
// found in the inlined graph by the call stacks torch::jit::Inline records, and the edits a
// request's graph copy gets for them (editedForward). See docs/ARCHITECTURE.md.
#include "op_sites.h"
#include "model_state.h"

namespace ts {

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
void listOps(ForwardGraphs& f, torch::jit::Module& m, ModelState& s) {
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
  if (s.metaCopy)
    throw UserError("model.scan does not run operations inside modules (.source) or skip(): trace them instead");
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
  } catch (const std::exception&) {  // a model that cannot run them lists ops without shapes
    for (auto& op : f.ops) op.shapes.clear();
  }
}

}  // namespace ts
