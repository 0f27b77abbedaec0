// Values and errors crossing N-API: tensor handles (a JS External on a native tensor) and their
// registry, dtype and device names, JS values <-> IValues, and exceptions as JS Errors.
#include "convert.h"
#include "init.h"

namespace ts {

// Every live TensorBox of the process (all JS threads). asTensor accepts an External only when
// it holds one of these: another addon's External holds its own pointer.
// Both are never destroyed: finalizers may run at exit, after static destructors.
static std::mutex& liveMu() {
  static auto* m = new std::mutex();
  return *m;
}
static std::unordered_set<const void*>& live() {
  static auto* s = new std::unordered_set<const void*>();
  return *s;
}

std::string errorMessage(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

std::string shapeString(at::IntArrayRef sizes) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < sizes.size(); ++i) o << (i ? ", " : "") << sizes[i];
  o << "]";
  return o.str();
}

std::string describe(const c10::IValue& v) {
  if (v.isTensor()) {
    const auto& t = v.toTensor();
    if (!t.defined()) return "an undefined tensor";
    return "tensor " + shapeString(t.sizes()) + " " + dtypeName(t.scalar_type());
  }
  if (v.isInt()) return "int " + std::to_string(v.toInt());
  if (v.isDouble()) return "number " + std::to_string(v.toDouble());
  if (v.isBool()) return v.toBool() ? "true" : "false";
  if (v.isNone()) return "null";
  if (v.isString()) return "string '" + v.toStringRef() + "'";
  if (v.isList()) return "a list of " + std::to_string(v.toListRef().size());
  if (v.isTuple()) return "a tuple of " + std::to_string(v.toTupleRef().elements().size());
  return v.tagKind();
}

static const std::vector<std::pair<const char*, c10::ScalarType>>& dtypeTable() {
  static const std::vector<std::pair<const char*, c10::ScalarType>> t = {
      {"float32", at::kFloat}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
      {"float64", at::kDouble}, {"int64", at::kLong},  {"int32", at::kInt},
      {"int16", at::kShort},    {"int8", at::kChar},   {"uint8", at::kByte},
      {"bool", at::kBool}};
  return t;
}

c10::ScalarType parseDtype(const std::string& name) {
  for (auto& [n, t] : dtypeTable())
    if (name == n) return t;
  if (name == "float") return at::kFloat;
  if (name == "half") return at::kHalf;
  if (name == "double") return at::kDouble;
  if (name == "long") return at::kLong;
  std::string all;
  for (auto& [n, t] : dtypeTable()) all += (all.empty() ? "" : ", ") + std::string(n);
  throw UserError("unknown dtype '" + name + "'; expected one of " + all);
}

std::string dtypeName(c10::ScalarType t) {
  for (auto& [n, s] : dtypeTable())
    if (s == t) return n;
  return c10::toString(t);
}

c10::Device parseDevice(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    int index = 0;
    if (name.size() > 4) {
      if (name[4] != ':' || name.size() == 5 || name.size() > 8 ||
          name.find_first_not_of("0123456789", 5) != std::string::npos)
        throw UserError("unknown device '" + name + "'; expected 'cpu', 'cuda' or 'cuda:N'");
      index = std::stoi(name.substr(5));
    }
    if (!torch::cuda::is_available())
      throw UserError("device '" + name + "' asked for, but CUDA is not available (this libtorch build " +
                      std::string(at::hasCUDA() ? "has CUDA but sees no GPU" : "is CPU-only") + ")");
    int n = (int)torch::cuda::device_count();
    if (index >= n)
      throw UserError("device '" + name + "' asked for, but only " + std::to_string(n) + " CUDA device(s) exist");
    return c10::Device(c10::kCUDA, (c10::DeviceIndex)index);
  }
  throw UserError("unknown device '" + name + "'; expected 'cpu', 'cuda' or 'cuda:N'");
}

std::string deviceName(const c10::Device& d) {
  if (d.is_cpu()) return "cpu";
  return d.str();
}

// ---- JS <-> IValue ----------------------------------------------------------------------

c10::IValue jsToIValue(const Napi::Value& v, const std::string& where, int depth) {
  if (depth > 32) throw UserError(where + ": value nested too deeply");
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0)
      return c10::IValue((int64_t)d);
    return c10::IValue(d);
  }
  if (v.IsBoolean()) return c10::IValue(v.As<Napi::Boolean>().Value());
  if (v.IsNull() || v.IsUndefined()) return c10::IValue();
  if (v.IsString()) return c10::IValue(v.As<Napi::String>().Utf8Value());
  if (v.IsBigInt()) {
    bool lossless = false;
    int64_t i = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throw UserError(where + ": bigint out of int64 range");
    return c10::IValue(i);
  }
  if (v.IsArray()) {
    auto arr = v.As<Napi::Array>();
    uint32_t n = arr.Length();
    if (n > (1u << 20)) throw UserError(where + ": list too long (" + std::to_string(n) + ")");
    std::vector<c10::IValue> items;
    items.reserve(n);
    for (uint32_t i = 0; i < n; ++i) items.push_back(jsToIValue(arr.Get(i), where, depth + 1));
    return listValue(std::move(items));
  }
  if (auto* tw = asTensor(v)) return c10::IValue(tw->tensor());
  throw UserError(where + ": unsupported value (expected a number, boolean, null, string, array or Tensor)");
}

c10::IValue listValue(std::vector<c10::IValue> items) {
  bool allInt = true, allTensor = !items.empty();
  for (const auto& x : items) {
    allInt = allInt && x.isInt();
    allTensor = allTensor && x.isTensor();
  }
  if (allInt) {
    c10::List<int64_t> l;
    for (auto& x : items) l.push_back(x.toInt());
    return c10::IValue(l);
  }
  if (allTensor) {
    c10::List<at::Tensor> l;
    for (auto& x : items) l.push_back(x.toTensor());
    return c10::IValue(l);
  }
  c10::impl::GenericList l(c10::AnyType::get());
  for (auto& x : items) l.push_back(std::move(x));
  return c10::IValue(l);
}

// Returns only primitives, arrays and tensor handles: fromNative (src/tensor.ts) takes any other
// object for a handle, so a new kind of object here must be handled there too.
Napi::Value ivalueToJs(Napi::Env env, const c10::IValue& v, int64_t* unreported) {
  if (v.isTensor()) return wrapTensor(env, v.toTensor(), unreported);
  if (v.isInt()) return Napi::Number::New(env, (double)v.toInt());
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isNone()) return env.Null();
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isTuple() || v.isList()) {
    const auto items = v.isTuple() ? v.toTupleRef().elements().vec() : v.toListRef().vec();
    std::vector<napi_value> out;
    out.reserve(items.size());
    for (const auto& x : items) out.push_back(ivalueToJs(env, x, unreported));
    return arrayOf(env, out);
  }
  throw UserError("cannot return a value of type " + std::string(v.tagKind()) + " to JavaScript");
}

Napi::Array arrayOf(Napi::Env env, const std::vector<napi_value>& items) {
  auto& f = addonData(env).arrayOf;
  // the maker takes the items as arguments: past a few thousand, setting them one by one is
  // kinder to the stack, and its cost is lost in the rest
  if (!f.IsEmpty() && items.size() <= 4096) {
    auto v = f.Call(env.Undefined(), items.size(), items.data());
    if (v.IsArray()) return v.As<Napi::Array>();
  }
  auto arr = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) arr.Set((uint32_t)i, Napi::Value(env, items[i]));
  return arr;
}

Napi::Error toJsError(Napi::Env env, const std::exception& e) {
  auto err = Napi::Error::New(env, errorMessage(e));
  if (dynamic_cast<const UserError*>(&e)) err.Set("code", Napi::String::New(env, "TORCHSIGHT_INPUT"));
  return err;
}

// Saved values of a request (Interpreter::saved) for its promise.
Napi::Array savedToJs(Napi::Env env, const std::vector<std::pair<int, c10::IValue>>& saved) {
  std::vector<napi_value> items;
  items.reserve(saved.size() * 2);
  // the handles' bytes go to V8 in one call, not one a tensor (12 saves: 11 N-API calls fewer)
  // (also when a later value throws: each handle made gives its bytes back when released)
  int64_t unreported = 0;
  try {
    for (const auto& [id, v] : saved) {
      items.push_back(Napi::Number::New(env, id));
      items.push_back(ivalueToJs(env, v, &unreported));
    }
  } catch (...) {
    if (unreported > 0) Napi::MemoryManagement::AdjustExternalMemory(env, unreported);
    throw;
  }
  if (unreported > 0) Napi::MemoryManagement::AdjustExternalMemory(env, unreported);
  return arrayOf(env, items);
}

// Makes arrayOf's array maker for this addon instance.
void initConvert(Napi::Env env) {
  // The array maker of arrayOf(): a rest parameter gathers the arguments in one step (Array.of
  // stores them one by one through V8's runtime: 12 results took 63-84 us in place that way,
  // 18-23 us this way). Should compiling it fail, arrays are filled element by element.
  napi_value script, maker;
  if (napi_create_string_utf8(env, "(function (...items) { return items; })", NAPI_AUTO_LENGTH, &script) == napi_ok &&
      napi_run_script(env, script, &maker) == napi_ok) {
    Napi::Value m(env, maker);
    if (m.IsFunction()) addonData(env).arrayOf = Napi::Persistent(m.As<Napi::Function>());
  } else {
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);  // the refusal is not the caller's error
  }
}

// ---- Tensor handles ---------------------------------------------------------------------

const at::Tensor& TensorBox::tensor() const {
  if (!has) throw UserError("this Tensor was disposed");
  return t;
}

void TensorBox::release(Napi::Env env) {
  if (!has) return;
  t = at::Tensor();
  has = false;
  if (reported > 0) Napi::MemoryManagement::AdjustExternalMemory(env, -reported);
  reported = 0;
}

Napi::Value wrapTensor(Napi::Env env, at::Tensor t, int64_t* unreported) {
  auto box = std::make_unique<TensorBox>();
  box->t = std::move(t);
  box->has = true;
  // The GC finalizer gives back the memory reported for a tensor never disposed (the raw call:
  // nothing may throw out of a finalizer) and frees the box.
  auto ext = Napi::External<TensorBox>::New(env, box.get(), [](Napi::Env e, TensorBox* b) {
    {
      std::lock_guard<std::mutex> lock(liveMu());
      live().erase(b);
    }
    if (b->reported > 0) {
      int64_t ignored;
      napi_adjust_external_memory(e, -b->reported, &ignored);
    }
    delete b;
  });
  TensorBox* b = box.release();  // the External owns it now
  {
    std::lock_guard<std::mutex> lock(liveMu());
    live().insert(b);
  }
  // Tell V8 about native memory so its GC runs finalizers when handles pile up.
  if (b->t.defined() && b->t.device().is_cpu()) {
    b->reported = (int64_t)b->t.storage().nbytes();
    if (unreported) *unreported += b->reported;
    else if (b->reported > 0) Napi::MemoryManagement::AdjustExternalMemory(env, b->reported);
  }
  return ext;
}

TensorBox* asTensor(const Napi::Value& v) {
  napi_valuetype type;
  if (napi_typeof(v.Env(), v, &type) != napi_ok || type != napi_external) return nullptr;
  void* p = nullptr;
  if (napi_get_value_external(v.Env(), v, &p) != napi_ok || !p) return nullptr;
  auto* b = static_cast<TensorBox*>(p);
  std::lock_guard<std::mutex> lock(liveMu());
  return live().count(b) ? b : nullptr;  // another addon's External is not ours
}

}  // namespace ts
