// AsyncWorkers: everything slow runs on libuv's pool. Every exception is caught inside
// Execute (one escaping would terminate Node) and becomes a rejected promise.
#include "workers.h"

namespace ts {
namespace {

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

class LoadWorker : public Worker {
 public:
  LoadWorker(Napi::Env env, std::string path, std::string device, std::string dtype)
      : Worker(env), path_(std::move(path)), device_(std::move(device)), dtype_(std::move(dtype)) {}
  void work() override { state_ = loadModelState(path_, device_, dtype_); }
  Napi::Value result(Napi::Env env) override { return newModelObject(env, std::move(state_)); }

 private:
  std::string path_, device_, dtype_;
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
    logits_ = interp.logits;
    fired_ = std::move(interp.firedSites);
  }
  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Object::New(env);
    auto saved = Napi::Array::New(env, saved_.size());
    for (size_t i = 0; i < saved_.size(); ++i) {
      auto pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::Number::New(env, saved_[i].first));
      pair.Set(1u, ivalueToJs(env, saved_[i].second));
      saved.Set((uint32_t)i, pair);
    }
    out.Set("saved", saved);
    if (logits_.defined()) out.Set("logits", wrapTensor(env, logits_));
    if (req_.recordSites) {
      auto fired = Napi::Array::New(env, fired_.size());
      for (size_t i = 0; i < fired_.size(); ++i) fired.Set((uint32_t)i, fired_[i]);
      out.Set("fired", fired);
    }
    saved_.clear();
    req_ = Request();  // drop the inputs and intermediate values now
    return out;
  }

 private:
  std::shared_ptr<ModelState> m_;
  Request req_;
  std::vector<std::pair<int, c10::IValue>> saved_;
  at::Tensor logits_;
  std::vector<std::string> fired_;
  Napi::ObjectReference keep_;
};

}  // namespace

Napi::Value queueLoad(Napi::Env env, std::string path, std::string device, std::string dtype) {
  auto* w = new LoadWorker(env, std::move(path), std::move(device), std::move(dtype));
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
