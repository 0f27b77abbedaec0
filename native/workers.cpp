// AsyncWorkers: everything slow runs on libuv's pool. Every exception is caught inside
// Execute (one escaping would terminate Node) and becomes a rejected promise.
#include "workers.h"

namespace ts {
namespace {

// Builds a site graph (SiteGraphs) on libuv's pool; a graph that cannot be built is never tried
// again and the requests for it keep running the graph with every site.
class SiteGraphWorker : public Napi::AsyncWorker {
 public:
  SiteGraphWorker(Napi::Env env, SiteGraphBuild b) : Napi::AsyncWorker(env), b_(std::move(b)) {}
  void Execute() override {
    std::shared_ptr<torch::jit::GraphFunction> fn;
    try {
      fn = siteGraph(*b_.graph, b_.key[0] == 's' ? "step_sites" : "forward_sites", &b_.keep, torch::jit::ExecutorExecutionMode::SIMPLE);
    } catch (...) {
      fn = nullptr;
    }
    try {
      b_.cache->finish(b_.key, std::move(fn));
    } catch (...) {  // nothing may leave Execute; the entry then stays unbuilt
    }
  }

 private:
  SiteGraphBuild b_;
};

// Queues the builds a request asked for (on the JS thread: a worker is queued from there).
// Never throws: the request has succeeded whatever happens to its builds.
void queueSiteGraphs(Napi::Env env, std::vector<SiteGraphBuild>& builds) {
  for (auto& b : builds) {
    if (!b.cache->claim(b.key)) continue;
    auto cache = b.cache;
    std::string key = b.key;
    try {
      (new SiteGraphWorker(env, std::move(b)))->Queue();
    } catch (...) {
      try {
        cache->finish(key, nullptr);
      } catch (...) {
      }
    }
  }
  builds.clear();
}

class Worker : public Napi::AsyncWorker {
 public:
  explicit Worker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual void work() = 0;
  virtual Napi::Value result(Napi::Env env) = 0;
  void Execute() override {
    try {
      work();
    } catch (const UserError& e) {
      userError_ = true;
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(errorMessage(e));
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
      deferred_.Resolve(result(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(toJsError(env, e).Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    auto err = Napi::Error::New(Env(), e.Message());
    if (userError_) err.Set("code", Napi::String::New(Env(), "TORCHSIGHT_INPUT"));
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  bool userError_ = false;
};

// An optional JS callback that a worker thread posts events to without waiting; released with
// its worker (events already queued are still delivered).
class JsCallback {
 public:
  JsCallback(Napi::Env env, const Napi::Function& fn, const char* name) {
    if (fn.IsEmpty()) return;
    fn_ = Napi::ThreadSafeFunction::New(env, fn, name, 0, 1);
    set_ = true;
  }
  ~JsCallback() {
    if (set_) fn_.Release();
  }
  JsCallback(const JsCallback&) = delete;
  JsCallback& operator=(const JsCallback&) = delete;
  explicit operator bool() const { return set_; }
  // `call(env, cb, data)` runs on the JS thread and owns `data` from then on.
  template <typename T, typename Call>
  void post(T* data, Call call) {
    if (!set_ || fn_.NonBlockingCall(data, call) != napi_ok) delete data;
  }

 private:
  Napi::ThreadSafeFunction fn_;
  bool set_ = false;
};

class LoadWorker : public Worker {
 public:
  LoadWorker(Napi::Env env, std::string path, std::string device, std::string dtype, std::string step, Napi::Function onProgress)
      : Worker(env), path_(std::move(path)), device_(std::move(device)), dtype_(std::move(dtype)), step_(std::move(step)),
        onProgress_(env, onProgress, "torchsight-load") {}
  void work() override {
    LoadProgress progress;
    if (onProgress_)
      progress = [this](const char* phase, uint64_t done, uint64_t total) {
        struct Event { const char* phase; double done, total; };  // phase: a string literal
        onProgress_.post(new Event{phase, (double)done, (double)total}, [](Napi::Env env, Napi::Function cb, Event* e) {
          Event v = *e;
          delete e;
          cb.Call({Napi::String::New(env, v.phase), Napi::Number::New(env, v.done), Napi::Number::New(env, v.total)});
        });
      };
    state_ = loadModelState(path_, device_, dtype_, step_, progress);
  }
  Napi::Value result(Napi::Env env) override { return newModelObject(env, std::move(state_)); }

 private:
  std::string path_, device_, dtype_, step_;
  JsCallback onProgress_;
  std::shared_ptr<ModelState> state_;
};

class RunWorker : public Worker {
 public:
  RunWorker(Napi::Env env, std::shared_ptr<ModelState> m, Request r, Napi::Value keep)
      : Worker(env), m_(std::move(m)), req_(std::move(r)) {
    // keeps the request's JS buffers (the cancel flag) alive while native code reads them
    if (keep.IsObject()) keep_ = Napi::Persistent(keep.As<Napi::Object>());
  }
  void work() override {
    std::lock_guard<std::mutex> lock(m_->mu);
    c10::InferenceMode guard;  // thread-local: set on this worker thread
    Interpreter interp(*m_, req_);
    interp.run();
    saved_ = interp.saved();
    if (req_.returnLogits) logits_ = interp.logits;
    fired_ = std::move(interp.firedSites);
    builds_ = std::move(interp.builds);
  }
  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Object::New(env);
    out.Set(key(env, Key::saved), savedToJs(env, saved_));
    if (logits_.defined()) out.Set(key(env, Key::logits), wrapTensor(env, logits_));
    if (req_.recordSites) {
      auto fired = Napi::Array::New(env, fired_.size());
      for (size_t i = 0; i < fired_.size(); ++i) fired.Set((uint32_t)i, fired_[i]);
      out.Set(key(env, Key::fired), fired);
    }
    saved_.clear();
    req_ = Request();  // drop the inputs and intermediate values now
    queueSiteGraphs(env, builds_);
    return out;
  }

 private:
  std::shared_ptr<ModelState> m_;
  Request req_;
  std::vector<std::pair<int, c10::IValue>> saved_;
  at::Tensor logits_;
  std::vector<std::string> fired_;
  std::vector<SiteGraphBuild> builds_;
  Napi::ObjectReference keep_;
};

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

Napi::Value queueLoad(Napi::Env env, std::string path, std::string device, std::string dtype, std::string stepPath,
                      Napi::Function onProgress) {
  auto* w = new LoadWorker(env, std::move(path), std::move(device), std::move(dtype), std::move(stepPath), onProgress);
  auto p = w->promise();
  w->Queue();
  return p;
}

Napi::Value queueRun(Napi::Env env, std::shared_ptr<ModelState> model, Request req, Napi::Value keep) {
  auto* w = new RunWorker(env, std::move(model), std::move(req), keep);
  auto p = w->promise();
  w->Queue();
  return p;
}

}  // namespace ts
