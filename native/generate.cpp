// Generation: its options read from JS, sampling, the loop (one forward a step, the
// key/value-cache step graph when there is one) and the worker that runs it off the JS thread.
#include "generate.h"
#include "worker.h"
#include <ATen/CPUGeneratorImpl.h>

namespace ts {

GenOptions parseGenOptions(const Napi::Object& o) {
  GenOptions g;
  auto num = [&](const char* k, double lo, double hi, double dflt) -> double {
    auto v = o.Get(k);
    if (v.IsUndefined() || v.IsNull()) return dflt;
    if (!v.IsNumber()) throw UserError(std::string("generate: ") + k + " must be a number");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= lo && d <= hi))
      throw UserError(std::string("generate: ") + k + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(d));
    return d;
  };
  g.maxNewTokens = (int)num("maxNewTokens", 0, 1 << 20, 20);
  g.temperature = num("temperature", 0, 1e6, 0);
  g.topK = (int64_t)num("topK", 0, 1e9, 0);
  g.topP = num("topP", 0, 1, 1);
  g.seed = (uint64_t)num("seed", 0, 9007199254740991.0, 0);
  g.padId = (int64_t)num("padId", 0, 1e12, 0);
  g.useCache = !o.Get("useCache").IsBoolean() || o.Get("useCache").As<Napi::Boolean>().Value();
  auto stops = o.Get("stopIds");
  if (stops.IsArray()) {
    auto a = stops.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length() && i < 4096; ++i) {
      if (!a.Get(i).IsNumber()) throw UserError("generate: stopIds must be token ids");
      g.stopIds.push_back(a.Get(i).As<Napi::Number>().Int64Value());
    }
  }
  return g;
}

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
  if (tr.backward >= 0)  // each step's forward would need its own backward, through the cache
    fail(r_.nodes[tr.backward], "gradients are not available in generate(): run model.trace on the prompt (plus the tokens "
                                "generated so far) and call .backward() there");
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

namespace {

// Generation: the whole loop runs here; each step's tokens go to JS through a thread-safe
// function (streaming, stop strings) without waiting for it.
class GenWorker : public Worker {
 public:
  GenWorker(Napi::Env env, std::shared_ptr<ModelState> m, Request r, GenOptions o, Napi::Function onStep, Napi::Value keep)
      : Worker(env), m_(std::move(m)), req_(std::move(r)), o_(std::move(o)), onStep_(env, onStep, "torchsight-generate") {
    if (keep.IsObject()) keep_ = Napi::Persistent(keep.As<Napi::Object>());
  }
  void work() override {
    std::lock_guard<std::mutex> lock(m_->mu);
    c10::InferenceMode guard;
    Interpreter interp(*m_, req_);
    auto emit = [this](int step, const std::vector<int64_t>& toks) {
      if (!onStep_) return;
      onStep_.post(new std::pair<int, std::vector<int64_t>>(step, toks), [](Napi::Env env, Napi::Function cb, std::pair<int, std::vector<int64_t>>* d) {
        auto arr = Napi::Array::New(env, d->second.size());
        for (size_t i = 0; i < d->second.size(); ++i) arr.Set((uint32_t)i, Napi::Number::New(env, (double)d->second[i]));
        int step = d->first;
        delete d;
        cb.Call({arr, Napi::Number::New(env, step)});
      });
    };
    interp.generate(o_, emit);
    saved_ = interp.saved();
    tokens_ = interp.tokens;
    steps_ = interp.stepsRun;
    usedCache_ = interp.usedCache;
    builds_ = std::move(interp.builds);
  }
  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Object::New(env);
    out.Set("saved", savedToJs(env, saved_));
    auto toks = Napi::Array::New(env, tokens_.size());
    for (size_t b = 0; b < tokens_.size(); ++b) {
      auto row = Napi::Array::New(env, tokens_[b].size());
      for (size_t i = 0; i < tokens_[b].size(); ++i) row.Set((uint32_t)i, Napi::Number::New(env, (double)tokens_[b][i]));
      toks.Set((uint32_t)b, row);
    }
    out.Set("tokens", toks);
    out.Set("steps", steps_);
    out.Set("usedCache", usedCache_);
    saved_.clear();
    req_ = Request();
    queueSiteGraphs(env, builds_);
    return out;
  }

 private:
  std::shared_ptr<ModelState> m_;
  Request req_;
  GenOptions o_;
  JsCallback onStep_;
  Napi::ObjectReference keep_;
  std::vector<std::pair<int, c10::IValue>> saved_;
  std::vector<std::vector<int64_t>> tokens_;
  int steps_ = 0;
  bool usedCache_ = false;
  std::vector<SiteGraphBuild> builds_;
};

}  // namespace

Napi::Value queueGenerate(Napi::Env env, std::shared_ptr<ModelState> model, Request req, GenOptions o,
                          Napi::Function onStep, Napi::Value keep) {
  auto* w = new GenWorker(env, std::move(model), std::move(req), std::move(o), onStep, keep);
  auto p = w->promise();
  w->Queue();
  return p;
}

}  // namespace ts
