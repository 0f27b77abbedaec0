// Generation: sampling and the loop (one forward a step, the key/value-cache step graph when
// there is one).
#include "runtime.h"
#include <ATen/CPUGeneratorImpl.h>

namespace ts {

static at::Tensor sampleNext(const at::Tensor& last, const GenOptions& o, at::Generator& gen) {
  at::Tensor l = last.to(at::kCPU, at::kFloat);
  if (o.temperature <= 0) return l.argmax(-1);
  l = l / o.temperature;
  const double inf = std::numeric_limits<double>::infinity();
  int64_t vocab = l.size(-1);
  if (o.topK > 0 && o.topK < vocab) {
    auto kth = std::get<0>(l.topk(o.topK, -1)).select(-1, o.topK - 1).unsqueeze(-1);
    l = l.masked_fill(l < kth, -inf);
  }
  if (o.topP > 0 && o.topP < 1) {
    auto sorted = l.sort(-1, true);
    auto values = std::get<0>(sorted), index = std::get<1>(sorted);
    auto probs = values.softmax(-1);
    auto before = probs.cumsum(-1) - probs;  // mass of the tokens ranked above: keep while < p
    values = values.masked_fill(before >= o.topP, -inf);
    l = at::full_like(l, -inf).scatter(-1, index, values);
  }
  return at::multinomial(l.softmax(-1), 1, false, gen).squeeze(-1);
}

void Interpreter::generate(const GenOptions& o, const std::function<void(int, const std::vector<int64_t>&)>& onStep) {
  counts_.assign(m_.siteNames.size(), 0);
  interest_.assign(m_.siteNames.size(), 0);
  ContextScope scope(m_, this);
  Trace& tr = r_.traces[0];
  auto dev = m_.device;
  const int64_t B = tr.ids.size(0);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  bool cache = o.useCache && m_.hasStep;
  usedCache = cache;
  generating_ = true;
  at::Tensor ids = tr.ids.to(dev), mask = tr.mask.to(dev), pos = tr.pos.to(dev);
  at::Tensor pastK, pastV;
  if (cache) {
    auto opts = at::TensorOptions().device(dev).dtype(m_.dtype);
    pastK = at::zeros({m_.cacheLayers, B, m_.cacheHeads, 0, m_.cacheHeadDim}, opts);
    pastV = at::zeros({m_.cacheLayers, B, m_.cacheHeads, 0, m_.cacheHeadDim}, opts);
  }
  at::Tensor cur = ids, curPos = pos;
  std::vector<char> finished(B, 0);
  tokens.assign(B, {});
  for (int step = 0; step < o.maxNewTokens; ++step) {
    if (r_.cancelFlag() == CancelFlag::Stop) break;  // a stop string was seen
    c10::IValue out = cache ? forwardStep(0, step, m_.stepForward, {cur, mask, curPos, pastK, pastV})
                            : forwardStep(0, step, m_.forward, {cur, mask, curPos});
    if (out.isNone()) throw UserError("generate: the forward stopped early (tracer.stop() has no meaning in generation)");
    at::Tensor all = firstTensor(out);
    if (step == 0) logits = all;
    at::Tensor next = sampleNext(all.select(1, all.size(1) - 1), o, gen);  // [B] on the CPU
    auto acc = next.accessor<int64_t, 1>();
    std::vector<int64_t> emitted(B, -1);
    bool allDone = true;
    for (int64_t b = 0; b < B; ++b) {
      if (finished[b]) {
        next[b] = o.padId;
        continue;
      }
      int64_t t = acc[b];
      tokens[b].push_back(t);
      emitted[b] = t;
      if (std::find(o.stopIds.begin(), o.stopIds.end(), t) != o.stopIds.end()) finished[b] = 1;
      allDone = allDone && finished[b];
    }
    stepsRun = step + 1;
    if (onStep) onStep(step, emitted);
    if (allDone) break;
    at::Tensor nextDev = next.to(dev).unsqueeze(1);
    mask = at::cat({mask, at::ones({B, 1}, mask.options())}, 1);
    at::Tensor newPos = (mask.sum(-1, true) - 1).clamp_min(0);
    if (cache) {
      const auto& el = out.toTupleRef().elements();
      pastK = el.at(1).toTensor();
      pastV = el.at(2).toTensor();
      cur = nextDev;
      curPos = newPos;
    } else {
      cur = at::cat({cur, nextDev}, 1);
      curPos = (mask.cumsum(-1) - 1).clamp_min(0);
    }
  }
}

}  // namespace ts
