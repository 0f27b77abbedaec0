// The Tensor's JS functions: shape, dtype, device, item, data and dispose of a handle,
// Tensor.from, and the eager entry point of the op table.
#include "common.h"
#include "init.h"

namespace ts {

// The handle argument of a tensor function: a live handle (disposed or not).
static TensorBox& boxArg(const Napi::CallbackInfo& info, const char* fn) {
  auto* b = info.Length() > 0 ? asTensor(info[0]) : nullptr;
  if (!b) throw UserError(std::string(fn) + "(handle): not a tensor handle");
  return *b;
}

static Napi::Value TensorShape(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto sizes = boxArg(info, "tensorShape").tensor().sizes();
    std::vector<napi_value> items;
    items.reserve(sizes.size());
    for (auto d : sizes) items.push_back(Napi::Number::New(info.Env(), (double)d));
    return arrayOf(info.Env(), items);
  });
}

static Napi::Value TensorDtype(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), dtypeName(boxArg(info, "tensorDtype").tensor().scalar_type()));
  });
}

static Napi::Value TensorDevice(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), deviceName(boxArg(info, "tensorDevice").tensor().device()));
  });
}

static Napi::Value TensorDisposed(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), !boxArg(info, "tensorDisposed").has); });
}

static Napi::Value IsTensor(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), info.Length() > 0 && asTensor(info[0]) != nullptr);
}

static Napi::Value TensorItem(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto& t = boxArg(info, "tensorItem").tensor();
    if (t.numel() != 1)
      throw UserError("item() needs a tensor with one element, got shape " + shapeString(t.sizes()));
    c10::InferenceMode guard;
    auto s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(info.Env(), s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(info.Env(), (double)s.toLong());
    return Napi::Number::New(info.Env(), s.toDouble());
  });
}

// A host copy as a typed array of the tensor's dtype (float16/bfloat16 widen to float32:
// Node 20 has no Float16Array).
static Napi::Value TensorData(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    c10::InferenceMode guard;
    at::Tensor t = boxArg(info, "tensorData").tensor();
    auto st = t.scalar_type();
    if (st == at::kHalf || st == at::kBFloat16) st = at::kFloat;
    t = t.to(c10::Device(c10::kCPU), st).contiguous();
    size_t n = (size_t)t.numel();
    size_t bytes = n * t.element_size();
    auto buf = Napi::ArrayBuffer::New(env, bytes);
    if (bytes) std::memcpy(buf.Data(), t.data_ptr(), bytes);
    napi_typedarray_type tt;
    switch (st) {
      case at::kFloat: tt = napi_float32_array; break;
      case at::kDouble: tt = napi_float64_array; break;
      case at::kLong: tt = napi_bigint64_array; break;
      case at::kInt: tt = napi_int32_array; break;
      case at::kShort: tt = napi_int16_array; break;
      case at::kChar: tt = napi_int8_array; break;
      case at::kByte: case at::kBool: tt = napi_uint8_array; break;
      default: throw UserError("data(): unsupported dtype " + dtypeName(st));
    }
    napi_value out;
    NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, tt, n, buf, 0, &out), Napi::Value());
    return Napi::Value(env, out);
  });
}

static Napi::Value TensorDispose(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    boxArg(info, "tensorDispose").release(info.Env());
    return info.Env().Undefined();
  });
}

// ---- eager entry points -----------------------------------------------------------------

// tensorFrom(typedArray, shape, dtype, device): copies host data into a new tensor.
static Napi::Value TensorFrom(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsArray() || !info[2].IsString() ||
        !info[3].IsString())
      throw UserError("tensorFrom(data: TypedArray, shape: number[], dtype: string, device: string)");
    auto ta = info[0].As<Napi::TypedArray>();
    c10::ScalarType src;
    switch (ta.TypedArrayType()) {
      case napi_float32_array: src = at::kFloat; break;
      case napi_float64_array: src = at::kDouble; break;
      case napi_bigint64_array: src = at::kLong; break;
      case napi_int32_array: src = at::kInt; break;
      case napi_int16_array: src = at::kShort; break;
      case napi_int8_array: src = at::kChar; break;
      case napi_uint8_array: src = at::kByte; break;
      default: throw UserError("Tensor.from: unsupported typed array kind");
    }
    auto shapeArr = info[1].As<Napi::Array>();
    if (shapeArr.Length() > 16) throw UserError("Tensor.from: at most 16 dimensions");
    std::vector<int64_t> shape;
    double numel = 1;
    for (uint32_t i = 0; i < shapeArr.Length(); ++i) {
      auto d = shapeArr.Get(i);
      if (!d.IsNumber()) throw UserError("Tensor.from: shape must hold non-negative integers");
      double x = d.As<Napi::Number>().DoubleValue();
      if (!(x >= 0) || x != std::floor(x) || x > 9.0e15)
        throw UserError("Tensor.from: shape must hold non-negative integers, got " + std::to_string(x));
      shape.push_back((int64_t)x);
      numel *= x;
    }
    size_t n = ta.ElementLength();
    if (numel != (double)n)
      throw UserError("Tensor.from: shape " + shapeString(shape) + " needs " + std::to_string((int64_t)numel) +
                      " values, got " + std::to_string(n));
    auto dtype = parseDtype(info[2].As<Napi::String>().Utf8Value());
    auto device = parseDevice(info[3].As<Napi::String>().Utf8Value());
    c10::InferenceMode guard;
    auto t = at::empty(shape, at::TensorOptions().dtype(src));
    if (n) std::memcpy(t.data_ptr(), static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(),
                       n * t.element_size());
    if (src == at::kByte && dtype == at::kBool) t = t.ne(0);
    return wrapTensor(info.Env(), t.to(device, dtype));
  });
}

// op(name, args[]): one op of the table, eagerly.
static Napi::Value Op(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray())
      throw UserError("op(name: string, args: unknown[])");
    std::string name = info[0].As<Napi::String>().Utf8Value();
    const OpDef* op = findOp(name);
    if (!op) throw UserError("unknown op '" + name + "'");
    auto arr = info[1].As<Napi::Array>();
    std::vector<c10::IValue> args;
    for (uint32_t i = 0; i < arr.Length(); ++i)
      args.push_back(jsToIValue(arr.Get(i), name + " argument " + std::to_string(i)));
    c10::InferenceMode guard;
    return ivalueToJs(info.Env(), runOp(*op, args));
  });
}

static Napi::Value OpNames(const Napi::CallbackInfo& info) {
  auto names = opNames();
  auto arr = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); ++i) arr.Set((uint32_t)i, Napi::String::New(info.Env(), names[i]));
  return arr;
}

void initTensor(Napi::Env env, Napi::Object exports) {
  exports.Set("tensorShape", Napi::Function::New(env, TensorShape));
  exports.Set("tensorDtype", Napi::Function::New(env, TensorDtype));
  exports.Set("tensorDevice", Napi::Function::New(env, TensorDevice));
  exports.Set("tensorDisposed", Napi::Function::New(env, TensorDisposed));
  exports.Set("tensorItem", Napi::Function::New(env, TensorItem));
  exports.Set("tensorData", Napi::Function::New(env, TensorData));
  exports.Set("tensorDispose", Napi::Function::New(env, TensorDispose));
  exports.Set("isTensor", Napi::Function::New(env, IsTensor));
  exports.Set("tensorFrom", Napi::Function::New(env, TensorFrom));
  exports.Set("op", Napi::Function::New(env, Op));
  exports.Set("opNames", Napi::Function::New(env, OpNames));
}

}  // namespace ts
