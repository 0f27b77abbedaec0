// Declarations shared by the addon's translation units: errors, dtype/device names,
// the Tensor wrapper, the op table and the model/graph runtime.
#pragma once
#include "pch.h"

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

// ---- JS <-> native values -------------------------------------------------------
// A JS value (number, boolean, null, string, array, Tensor) as an IValue.
// Integral numbers become ints, others doubles. Throws UserError (with `where`) otherwise.
c10::IValue jsToIValue(const Napi::Value& v, const std::string& where, int depth = 0);
// A list's value as ops take it: all ints -> int[], all tensors -> Tensor[] (non-empty), else a generic list.
c10::IValue listValue(std::vector<c10::IValue> items);
// Tensors become Tensor objects, tuples and lists arrays, None null.
Napi::Value ivalueToJs(Napi::Env env, const c10::IValue& v);
// A JS array of `items`, made by one call of a function with a rest parameter: napi_set_element
// takes V8's generic property path once per element.
Napi::Array arrayOf(Napi::Env env, const std::vector<napi_value>& items);

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

// A new JS tensor handle owning `t`.
Napi::Value wrapTensor(Napi::Env env, at::Tensor t);
// The TensorBox behind a JS value, or nullptr when it is not one of our tensor handles.
TensorBox* asTensor(const Napi::Value& v);

// ---- op table ---------------------------------------------------------------------
// One table serves eager Tensor methods and the graph interpreter.
struct OpDef {
  const char* name;
  const char* signature;  // for messages: "mean(self, dim=None, keepdim=False)"
  int minArgs, maxArgs;
  bool inplace;           // mutates and returns args[0]
  bool view;              // result may alias args[0]
  c10::IValue (*fn)(std::vector<c10::IValue>& args);
};
// nullptr when unknown.
const OpDef* findOp(const std::string& name);
std::vector<std::string> opNames();
// Runs an op after checking the argument count. Errors are UserErrors naming the op.
c10::IValue runOp(const OpDef& op, std::vector<c10::IValue>& args);
// Parses the wire form of an index spec and applies it (a view).
at::Tensor applyIndex(const at::Tensor& t, const c10::IValue& spec);

// ---- addon-wide state --------------------------------------------------------------
struct ModelState;
// Property names read or written on every request. A C-string key makes V8 look the name up in
// its string table on every Get/Set (a few microseconds a request); these are made once.
#define TS_KEYS(X) X(recordSites) X(returnLogits) X(cancel) X(graph) X(traces) X(code) X(strings) X(tensors) \
  X(batch) X(seq) X(ids) X(mask) X(pos) X(invokes) X(begin) X(end) X(stop) X(saved) X(logits) X(fired)
enum class Key {
#define TS_KEY_ENUM(name) name,
  TS_KEYS(TS_KEY_ENUM)
#undef TS_KEY_ENUM
  Count
};
struct AddonData {
  Napi::ObjectReference keys;  // an Array of the names, by Key (N-API 8 refers to objects only)
  Napi::FunctionReference arrayOf;  // the array maker of arrayOf()
  Napi::FunctionReference modelCtor;
  // the state a NativeModel being constructed takes (handed over on the JS thread, never held
  // by a JS object: dispose() must free the model at once, not when the GC gets to a handle)
  std::shared_ptr<ModelState> pendingModel;
};
AddonData& addonData(Napi::Env env);
// The property name `k`, as a JS string made once per addon instance.
Napi::String key(Napi::Env env, Key k);

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

void initModel(Napi::Env env, Napi::Object exports);
void initTensor(Napi::Env env, Napi::Object exports);

}  // namespace ts
