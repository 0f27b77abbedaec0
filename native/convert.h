// Values and errors crossing N-API: errors that reach JS, dtype and device names, tensor
// handles, and JS values <-> IValues. The bottom of the addon: it depends on nothing but
// pch.h and the per-instance state (addon_data.h).
#pragma once
#include "pch.h"
#include "addon_data.h"

namespace ts {

// An error caused by the caller's input. Its message is shown to the user as is.
struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The message of any exception, without libtorch's C++ backtrace.
std::string errorMessage(const std::exception& e);
// "[1, 7, 64]"
std::string shapeString(at::IntArrayRef sizes);
// "tensor [1, 7, 64] float32" / "number" / "None" ...: for argument errors.
std::string describe(const c10::IValue& v);

c10::ScalarType parseDtype(const std::string& name);
std::string dtypeName(c10::ScalarType t);
c10::Device parseDevice(const std::string& name);
std::string deviceName(const c10::Device& d);

// ---- Tensor handle ----------------------------------------------------------------
// A tensor reaches JavaScript as a napi External holding a TensorBox (src/tensor.ts wraps it in
// a Tensor). An External costs far less to make than an ObjectWrap instance, which runs a JS
// constructor through V8's API-function path: in place after a forward on the CPU VM, a
// trace's first result took 42 us as an ObjectWrap and ~7 us as an External.
struct TensorBox {
  at::Tensor t;
  bool has = false;
  int64_t reported = 0;  // bytes reported to V8 as external memory
  // The tensor, or a UserError if disposed.
  const at::Tensor& tensor() const;
  void release(Napi::Env env);
};

// A new JS tensor handle owning `t`. Its bytes are reported to V8 as external memory now, or,
// with `unreported`, added there for the caller to report once for a batch of handles.
Napi::Value wrapTensor(Napi::Env env, at::Tensor t, int64_t* unreported = nullptr);
// The TensorBox behind a JS value, or nullptr when it is not one of our tensor handles.
TensorBox* asTensor(const Napi::Value& v);

// ---- JS <-> native values -------------------------------------------------------
// A JS value (number, boolean, null, string, array, Tensor) as an IValue.
// Integral numbers become ints, others doubles. Throws UserError (with `where`) otherwise.
c10::IValue jsToIValue(const Napi::Value& v, const std::string& where, int depth = 0);
// A list's value as ops take it: all ints -> int[], all tensors -> Tensor[] (non-empty), else a generic list.
c10::IValue listValue(std::vector<c10::IValue> items);
// Tensors become Tensor objects, tuples and lists arrays, None null. `unreported`: as for wrapTensor.
Napi::Value ivalueToJs(Napi::Env env, const c10::IValue& v, int64_t* unreported = nullptr);
// A JS array of `items`, made by one call of a function with a rest parameter: napi_set_element
// takes V8's generic property path once per element.
Napi::Array arrayOf(Napi::Env env, const std::vector<napi_value>& items);
// Saved values as [nodeId, value, nodeId, value, ...] (tensors become Tensor handles on their
// device), made in one call (arrayOf): pairs cost an array and three sets each.
Napi::Array savedToJs(Napi::Env env, const std::vector<std::pair<int, c10::IValue>>& saved);

// ---- errors to JS --------------------------------------------------------------------
// Converts any exception to a JS Error (sets .code for user errors).
Napi::Error toJsError(Napi::Env env, const std::exception& e);

// Runs a callback, turning C++ exceptions into JS exceptions so none crosses N-API.
template <typename F>
Napi::Value guarded(Napi::Env env, F&& f) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw toJsError(env, e);
  } catch (...) {
    throw Napi::Error::New(env, "torchsight: unknown native error");
  }
}

// For entries that return a promise: a C++ exception becomes a rejected promise (an input error
// rejects like a failure in the forward), never a synchronous throw.
template <typename F>
Napi::Value guardedAsync(Napi::Env env, F&& f) {
  auto rejected = [&](Napi::Value err) -> Napi::Value {
    auto d = Napi::Promise::Deferred::New(env);
    d.Reject(err);
    return d.Promise();
  };
  try {
    return f();
  } catch (const Napi::Error& e) {
    return rejected(e.Value());
  } catch (const std::exception& e) {
    return rejected(toJsError(env, e).Value());
  } catch (...) {
    return rejected(Napi::Error::New(env, "torchsight: unknown native error").Value());
  }
}

}  // namespace ts
