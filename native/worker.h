// The base of every AsyncWorker (everything slow runs on libuv's pool) and the thread-safe
// callback a worker posts events through. Every exception is caught inside Execute (one
// escaping would terminate Node) and becomes a rejected promise.
#pragma once
#include "common.h"

namespace ts {

// One job with a promise: work() on the pool, result() on the JS thread.
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

}  // namespace ts
