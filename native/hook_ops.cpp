// The ops the export's graphs call at every site: torchsight::hook (by site name, in model.pt's
// own methods) and torchsight::site (by id, in the inlined graphs). Each hands the site's value
// to the interpreter of the forward running on this thread, if any.
#include "interpreter.h"

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

}  // namespace ts
