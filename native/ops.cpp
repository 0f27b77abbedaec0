// The op table: name -> ATen call with argument checks. The eager Tensor methods and the
// graph interpreter both run ops through runOp, so the two cannot drift apart.
#include "common.h"

namespace ts {
namespace {

using IV = c10::IValue;
using Args = std::vector<IV>;

// Thrown by the accessors; runOp turns it into a message naming the op and the parameter.
struct ArgError {
  size_t index;
  std::string expected;
};

bool has(const Args& a, size_t i) { return i < a.size() && !a[i].isNone(); }

at::Tensor tensor(const Args& a, size_t i) {
  if (i < a.size() && a[i].isTensor() && a[i].toTensor().defined()) return a[i].toTensor();
  throw ArgError{i, "a tensor"};
}

bool isNumber(const IV& v) { return v.isInt() || v.isDouble() || v.isBool(); }

c10::Scalar scalar(const IV& v, size_t index) {
  if (v.isInt()) return c10::Scalar(v.toInt());
  if (v.isDouble()) return c10::Scalar(v.toDouble());
  if (v.isBool()) return c10::Scalar(v.toBool());
  throw ArgError{index, "a number"};
}

int64_t integer(const Args& a, size_t i, c10::optional<int64_t> dflt = c10::nullopt) {
  if (!has(a, i)) {
    if (dflt) return *dflt;
    throw ArgError{i, "an integer"};
  }
  if (a[i].isInt()) return a[i].toInt();
  throw ArgError{i, "an integer"};
}

double real(const Args& a, size_t i, double dflt) {
  if (!has(a, i)) return dflt;
  if (a[i].isInt()) return (double)a[i].toInt();
  if (a[i].isDouble()) return a[i].toDouble();
  throw ArgError{i, "a number"};
}

bool flag(const Args& a, size_t i, bool dflt) {
  if (!has(a, i)) return dflt;
  if (a[i].isBool()) return a[i].toBool();
  throw ArgError{i, "a boolean"};
}

// An int or a list of ints.
std::vector<int64_t> ints(const Args& a, size_t i) {
  if (i < a.size()) {
    if (a[i].isInt()) return {a[i].toInt()};
    if (a[i].isIntList()) return a[i].toIntVector();
    if (a[i].isList() && a[i].toListRef().empty()) return {};
  }
  throw ArgError{i, "an integer or a list of integers"};
}

std::vector<at::Tensor> tensors(const Args& a, size_t i) {
  std::vector<at::Tensor> out;
  if (i < a.size() && a[i].isList()) {
    for (const auto& x : a[i].toListRef()) {
      if (!x.isTensor()) throw ArgError{i, "a list of tensors"};
      out.push_back(x.toTensor());
    }
    if (out.empty()) throw ArgError{i, "a non-empty list of tensors"};
    return out;
  }
  throw ArgError{i, "a list of tensors"};
}

// `other` of a binary op: a number, or a tensor moved to self's device when it is on the
// CPU and self is not (a steering vector made on the host works on a CUDA activation).
IV other(const at::Tensor& self, const Args& a, size_t i) {
  if (i < a.size() && isNumber(a[i])) return a[i];
  at::Tensor o = tensor(a, i);
  if (o.device() != self.device() && o.device().is_cpu()) o = o.to(self.device());
  return IV(o);
}

// The other operand of an in-place op, moved to the live tensor's device. Its dtype is kept:
// ATen computes in the promoted type and rounds once into self (float32 into float16 works,
// float into int64 is refused), as PyTorch does.
at::Tensor inplaceOther(const at::Tensor& self, const Args& a, size_t i) {
  at::Tensor o = tensor(a, i);
  if (o.device() != self.device()) o = o.to(self.device());
  return o;
}

void checkDim(const at::Tensor& t, int64_t d, size_t argIndex) {
  int64_t n = std::max<int64_t>(t.dim(), 1);
  if (d < -n || d >= n)
    throw ArgError{argIndex, "a dimension in [" + std::to_string(-n) + ", " + std::to_string(n - 1) +
                                 "] for a tensor of shape " + shapeString(t.sizes())};
}

IV binary(const Args& a, at::Tensor (*ft)(const at::Tensor&, const at::Tensor&),
          at::Tensor (*fs)(const at::Tensor&, const c10::Scalar&)) {
  auto self = tensor(a, 0);
  IV o = other(self, a, 1);
  return o.isTensor() ? ft(self, o.toTensor()) : fs(self, scalar(o, 1));
}

#define UNARY(NAME, EXPR) \
  {NAME, NAME "(self)", 1, 1, false, false, [](Args& a) -> IV { auto t = tensor(a, 0); return EXPR; }}

// Reductions with PyTorch's (dim=None, keepdim=False).
IV reduce(const Args& a, at::Tensor (*all)(const at::Tensor&),
          at::Tensor (*dims)(const at::Tensor&, at::IntArrayRef, bool, c10::optional<at::ScalarType>)) {
  auto t = tensor(a, 0);
  if (!has(a, 1)) {
    if (flag(a, 2, false)) {
      std::vector<int64_t> all_dims(t.dim());
      for (int64_t d = 0; d < t.dim(); ++d) all_dims[d] = d;
      return dims(t, all_dims, true, c10::nullopt);
    }
    return all(t);
  }
  auto d = ints(a, 1);
  for (auto x : d) checkDim(t, x, 1);
  return dims(t, d, flag(a, 2, false), c10::nullopt);
}

at::Tensor meanAll(const at::Tensor& t) { return t.mean(); }
at::Tensor sumAll(const at::Tensor& t) { return t.sum(); }
at::Tensor meanDims(const at::Tensor& t, at::IntArrayRef d, bool k, c10::optional<at::ScalarType> s) {
  return at::mean(t, d, k, s);
}
at::Tensor sumDims(const at::Tensor& t, at::IntArrayRef d, bool k, c10::optional<at::ScalarType> s) {
  return at::sum(t, d, k, s);
}

// max/min: whole tensor, elementwise with another tensor, or along dim -> (values, indices).
IV extremum(const Args& a, bool isMax) {
  auto t = tensor(a, 0);
  if (!has(a, 1)) return isMax ? t.max() : t.min();
  if (a[1].isTensor()) {
    auto o = other(t, a, 1).toTensor();
    return isMax ? at::maximum(t, o) : at::minimum(t, o);
  }
  int64_t d = integer(a, 1);
  checkDim(t, d, 1);
  auto r = isMax ? t.max(d, flag(a, 2, false)) : t.min(d, flag(a, 2, false));
  return c10::ivalue::Tuple::create({IV(std::get<0>(r)), IV(std::get<1>(r))});
}

std::string shapeArg(const Args& a) { return a.size() > 1 && a[1].isIntList() ? shapeString(a[1].toIntVector()) : "?"; }

const std::vector<OpDef>& table() {
  static const std::vector<OpDef> ops = {
      // arithmetic (other: tensor or number)
      {"add", "add(self, other, alpha=1)", 2, 3, false, false, [](Args& a) -> IV {
         auto self = tensor(a, 0);
         IV o = other(self, a, 1);
         auto alpha = has(a, 2) ? scalar(a[2], 2) : c10::Scalar(1);
         return o.isTensor() ? at::add(self, o.toTensor(), alpha) : at::add(self, scalar(o, 1), alpha);
       }},
      {"sub", "sub(self, other, alpha=1)", 2, 3, false, false, [](Args& a) -> IV {
         auto self = tensor(a, 0);
         IV o = other(self, a, 1);
         auto alpha = has(a, 2) ? scalar(a[2], 2) : c10::Scalar(1);
         return o.isTensor() ? at::sub(self, o.toTensor(), alpha) : at::sub(self, scalar(o, 1), alpha);
       }},
      {"mul", "mul(self, other)", 2, 2, false, false,
       [](Args& a) -> IV { return binary(a, [](const at::Tensor& x, const at::Tensor& y) { return at::mul(x, y); },
                                         [](const at::Tensor& x, const c10::Scalar& y) { return at::mul(x, y); }); }},
      {"div", "div(self, other)", 2, 2, false, false,
       [](Args& a) -> IV { return binary(a, [](const at::Tensor& x, const at::Tensor& y) { return at::div(x, y); },
                                         [](const at::Tensor& x, const c10::Scalar& y) { return at::div(x, y); }); }},
      {"pow", "pow(self, exponent)", 2, 2, false, false,
       [](Args& a) -> IV { return binary(a, [](const at::Tensor& x, const at::Tensor& y) { return at::pow(x, y); },
                                         [](const at::Tensor& x, const c10::Scalar& y) { return at::pow(x, y); }); }},
      {"matmul", "matmul(self, other)", 2, 2, false, false, [](Args& a) -> IV {
         auto self = tensor(a, 0);
         auto o = other(self, a, 1);
         if (!o.isTensor()) throw ArgError{1, "a tensor"};
         const auto& t = o.toTensor();
         if (self.dim() == 0 || t.dim() == 0) throw ArgError{1, "tensors of at least one dimension"};
         return at::matmul(self, t);
       }},
      UNARY("neg", t.neg()),
      UNARY("abs", t.abs()),
      UNARY("exp", t.exp()),
      UNARY("log", t.log()),
      UNARY("sqrt", t.sqrt()),
      UNARY("clone", t.clone()),
      UNARY("float", t.to(at::kFloat)),
      UNARY("half", t.to(at::kHalf)),
      UNARY("bfloat16", t.to(at::kBFloat16)),
      UNARY("contiguous", t.contiguous()),
      {"detach", "detach(self)", 1, 1, false, true, [](Args& a) -> IV { return tensor(a, 0).detach(); }},
      // reductions
      {"mean", "mean(self, dim=None, keepdim=False)", 1, 3, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         if (!at::isFloatingType(t.scalar_type())) t = t.to(at::kFloat);  // mean of ints is a float
         Args b = a;
         b[0] = IV(t);
         return reduce(b, meanAll, meanDims);
       }},
      {"sum", "sum(self, dim=None, keepdim=False)", 1, 3, false, false,
       [](Args& a) -> IV { return reduce(a, sumAll, sumDims); }},
      {"max", "max(self, dim=None, keepdim=False)", 1, 3, false, false, [](Args& a) -> IV { return extremum(a, true); }},
      {"min", "min(self, dim=None, keepdim=False)", 1, 3, false, false, [](Args& a) -> IV { return extremum(a, false); }},
      {"norm", "norm(self, p=2, dim=None, keepdim=False)", 1, 4, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         double p = real(a, 1, 2.0);
         if (!has(a, 2)) {
           if (!flag(a, 3, false)) return at::norm(t, c10::Scalar(p));
           std::vector<int64_t> all(t.dim());
           for (int64_t d = 0; d < t.dim(); ++d) all[d] = d;
           return at::norm(t, c10::optional<c10::Scalar>(c10::Scalar(p)), all, true);
         }
         auto d = ints(a, 2);
         for (auto x : d) checkDim(t, x, 2);
         return at::norm(t, c10::optional<c10::Scalar>(c10::Scalar(p)), d, flag(a, 3, false));
       }},
      {"softmax", "softmax(self, dim)", 2, 2, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         int64_t d = integer(a, 1);
         checkDim(t, d, 1);
         return at::softmax(t, d);
       }},
      {"logSoftmax", "logSoftmax(self, dim)", 2, 2, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         int64_t d = integer(a, 1);
         checkDim(t, d, 1);
         return at::log_softmax(t, d);
       }},
      {"argmax", "argmax(self, dim=None, keepdim=False)", 1, 3, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         if (t.numel() == 0) throw ArgError{0, "a non-empty tensor"};
         c10::optional<int64_t> d;
         if (has(a, 1)) {
           d = integer(a, 1);
           checkDim(t, *d, 1);
         }
         return at::argmax(t, d, flag(a, 2, false));
       }},
      {"topk", "topk(self, k, dim=-1, largest=True, sorted=True)", 2, 5, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         int64_t k = integer(a, 1);
         int64_t d = integer(a, 2, -1);
         checkDim(t, d, 2);
         int64_t n = t.dim() == 0 ? 1 : t.size(d < 0 ? d + t.dim() : d);
         if (k < 0 || k > n) throw ArgError{1, "in [0, " + std::to_string(n) + "]"};
         auto r = at::topk(t, k, d, flag(a, 3, true), flag(a, 4, true));
         return c10::ivalue::Tuple::create({IV(std::get<0>(r)), IV(std::get<1>(r))});
       }},
      {"cosineSimilarity", "cosineSimilarity(self, other, dim=1, eps=1e-8)", 2, 4, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         auto o = other(t, a, 1);
         if (!o.isTensor()) throw ArgError{1, "a tensor"};
         int64_t d = integer(a, 2, 1);
         return at::cosine_similarity(t, o.toTensor(), d, real(a, 3, 1e-8));
       }},
      // shapes and views
      {"reshape", "reshape(self, shape)", 2, 2, false, true,
       [](Args& a) -> IV { return tensor(a, 0).reshape(ints(a, 1)); }},
      {"view", "view(self, shape)", 2, 2, false, true,
       [](Args& a) -> IV { return tensor(a, 0).view(ints(a, 1)); }},
      {"transpose", "transpose(self, dim0, dim1)", 3, 3, false, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         int64_t d0 = integer(a, 1), d1 = integer(a, 2);
         checkDim(t, d0, 1);
         checkDim(t, d1, 2);
         return t.transpose(d0, d1);
       }},
      {"permute", "permute(self, dims)", 2, 2, false, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         auto d = ints(a, 1);
         if ((int64_t)d.size() != t.dim())
           throw ArgError{1, std::to_string(t.dim()) + " dimensions for shape " + shapeString(t.sizes())};
         return t.permute(d);
       }},
      {"squeeze", "squeeze(self, dim=None)", 1, 2, false, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         if (!has(a, 1)) return t.squeeze();
         int64_t d = integer(a, 1);
         checkDim(t, d, 1);
         return t.squeeze(d);
       }},
      {"unsqueeze", "unsqueeze(self, dim)", 2, 2, false, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         int64_t d = integer(a, 1);
         int64_t n = t.dim() + 1;
         if (d < -n || d >= n) throw ArgError{1, "a dimension in [" + std::to_string(-n) + ", " + std::to_string(n - 1) + "]"};
         return t.unsqueeze(d);
       }},
      {"flatten", "flatten(self, start_dim=0, end_dim=-1)", 1, 3, false, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         int64_t s = integer(a, 1, 0), e = integer(a, 2, -1);
         checkDim(t, s, 1);
         checkDim(t, e, 2);
         return t.flatten(s, e);
       }},
      {"index", "index(self, spec)", 2, 2, false, true,
       [](Args& a) -> IV { return applyIndex(tensor(a, 0), a[1]); }},
      {"to", "to(self, dtype_or_device, dtype=None)", 2, 3, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         auto device = t.device();
         auto dtype = t.scalar_type();
         for (size_t i = 1; i < a.size(); ++i) {
           if (!a[i].isString()) throw ArgError{i, "a dtype or device name"};
           const auto& s = a[i].toStringRef();
           if (s == "cpu" || s.rfind("cuda", 0) == 0) device = parseDevice(s);
           else dtype = parseDtype(s);
         }
         return t.to(device, dtype);
       }},
      {"cat", "cat(tensors, dim=0)", 1, 2, false, false, [](Args& a) -> IV {
         auto ts = tensors(a, 0);
         return at::cat(ts, integer(a, 1, 0));
       }},
      {"stack", "stack(tensors, dim=0)", 1, 2, false, false, [](Args& a) -> IV {
         auto ts = tensors(a, 0);
         return at::stack(ts, integer(a, 1, 0));
       }},
      {"shape", "shape(self)", 1, 1, false, false,
       [](Args& a) -> IV { return IV(c10::List<int64_t>(tensor(a, 0).sizes().vec())); }},
      {"size", "size(self, dim=None)", 1, 2, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         if (!has(a, 1)) return IV(c10::List<int64_t>(t.sizes().vec()));
         int64_t d = integer(a, 1);
         checkDim(t, d, 1);
         return IV(t.size(d));
       }},
      {"item", "item(self)", 1, 1, false, false, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         if (t.numel() != 1) throw ArgError{0, "a tensor with one element"};
         auto s = t.item();
         if (s.isBoolean()) return IV(s.toBool());
         if (s.isIntegral(false)) return IV(s.toLong());
         return IV(s.toDouble());
       }},
      // element i of a tuple or list result (topk's values/indices, max along a dim)
      {"getitem", "getitem(self, index)", 2, 2, false, true, [](Args& a) -> IV {
         int64_t i = integer(a, 1);
         if (a[0].isTuple() || a[0].isList()) {
           auto items = a[0].isTuple() ? a[0].toTupleRef().elements().vec() : a[0].toListRef().vec();
           int64_t n = (int64_t)items.size();
           if (i < -n || i >= n) throw ArgError{1, "an index in [" + std::to_string(-n) + ", " + std::to_string(n - 1) + "]"};
           return items[i < 0 ? i + n : i];
         }
         throw ArgError{0, "a tuple or list"};
       }},
      // in place, on the live tensor
      {"copy_", "copy_(self, src)", 2, 2, true, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         auto src = inplaceOther(t, a, 1);  // copy_ casts to self's dtype, as in PyTorch
         if (!src.sizes().equals(t.sizes()) && !at::is_expandable_to(src.sizes(), t.sizes()))
           throw UserError("copy_: shapes " + shapeString(t.sizes()) + " and " + shapeString(src.sizes()) +
                           ": the source cannot be broadcast to the destination");
         return t.copy_(src);
       }},
      {"add_", "add_(self, other, alpha=1)", 2, 3, true, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         auto alpha = has(a, 2) ? scalar(a[2], 2) : c10::Scalar(1);
         if (isNumber(a[1])) return t.add_(scalar(a[1], 1), alpha);
         return t.add_(inplaceOther(t, a, 1), alpha);
       }},
      {"sub_", "sub_(self, other, alpha=1)", 2, 3, true, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         auto alpha = has(a, 2) ? scalar(a[2], 2) : c10::Scalar(1);
         if (isNumber(a[1])) return t.sub_(scalar(a[1], 1), alpha);
         return t.sub_(inplaceOther(t, a, 1), alpha);
       }},
      {"mul_", "mul_(self, other)", 2, 2, true, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         if (isNumber(a[1])) return t.mul_(scalar(a[1], 1));
         return t.mul_(inplaceOther(t, a, 1));
       }},
      {"div_", "div_(self, other)", 2, 2, true, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         if (isNumber(a[1])) return t.div_(scalar(a[1], 1));
         return t.div_(inplaceOther(t, a, 1));
       }},
      {"fill_", "fill_(self, value)", 2, 2, true, true, [](Args& a) -> IV {
         auto t = tensor(a, 0);
         if (!isNumber(a[1])) throw ArgError{1, "a number"};
         return t.fill_(scalar(a[1], 1));
       }},
      {"zero_", "zero_(self)", 1, 1, true, true, [](Args& a) -> IV { return tensor(a, 0).zero_(); }},
  };
  return ops;
}

const std::unordered_map<std::string, const OpDef*>& index() {
  static const auto idx = [] {
    std::unordered_map<std::string, const OpDef*> m;
    for (const auto& op : table()) m[op.name] = &op;
    return m;
  }();
  return idx;
}

// "mean(self, dim=None, keepdim=False)" -> name of parameter i.
std::string paramName(const OpDef& op, size_t i) {
  std::string sig = op.signature;
  auto open = sig.find('('), close = sig.rfind(')');
  std::vector<std::string> names;
  std::string cur;
  for (size_t k = open + 1; k < close; ++k) {
    if (sig[k] == ',') { names.push_back(cur); cur.clear(); }
    else if (sig[k] != ' ') cur += sig[k];
  }
  if (!cur.empty()) names.push_back(cur);
  if (i >= names.size()) return "#" + std::to_string(i);
  auto n = names[i];
  return n.substr(0, n.find('='));
}

}  // namespace

const OpDef* findOp(const std::string& name) {
  auto it = index().find(name);
  return it == index().end() ? nullptr : it->second;
}

std::vector<std::string> opNames() {
  std::vector<std::string> out;
  for (const auto& op : table()) out.push_back(op.name);
  return out;
}

c10::IValue runOp(const OpDef& op, std::vector<c10::IValue>& args) {
  if ((int)args.size() < op.minArgs || (int)args.size() > op.maxArgs)
    throw UserError(std::string(op.name) + ": expected " +
                    (op.minArgs == op.maxArgs ? std::to_string(op.minArgs)
                                              : std::to_string(op.minArgs) + " to " + std::to_string(op.maxArgs)) +
                    " arguments, got " + std::to_string(args.size()) + " (" + op.signature + ")");
  try {
    return op.fn(args);
  } catch (const ArgError& e) {
    std::string got = e.index < args.size() ? describe(args[e.index]) : "nothing";
    throw UserError(std::string(op.name) + ": argument '" + paramName(op, e.index) + "' must be " + e.expected +
                    "; got " + got);
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    // ATen's own message, with the shapes involved so the user can see which operand is off.
    std::string shapes;
    for (const auto& v : args)
      if (v.isTensor() && v.toTensor().defined())
        shapes += (shapes.empty() ? "" : " and ") + shapeString(v.toTensor().sizes());
    std::string msg = errorMessage(e);
    auto nl = msg.find('\n');
    if (nl != std::string::npos) msg = msg.substr(0, nl);
    throw UserError(std::string(op.name) + ": " + msg + (shapes.empty() ? "" : " (shapes " + shapes + ")"));
  }
}

// Wire form of an index spec: a list whose items are an int (select), "None" (new axis),
// "..." (ellipsis), or [start, stop, step] with nulls (a slice). Bounds are checked here
// so no out-of-range index reaches ATen.
at::Tensor applyIndex(const at::Tensor& t, const c10::IValue& spec) {
  using namespace at::indexing;
  if (!spec.isList()) throw UserError("index: spec must be a list");
  std::vector<TensorIndex> idx;
  int64_t dim = 0;
  bool ellipsis = false;
  auto items = spec.toListRef();
  int64_t consuming = 0;
  for (const auto& it : items)
    if (it.isInt() || it.isList()) consuming++;
  if (consuming > t.dim())
    throw UserError("index: too many indices (" + std::to_string(consuming) + ") for a tensor of shape " +
                    shapeString(t.sizes()));
  for (size_t k = 0; k < items.size(); ++k) {
    const auto& it = items[k];
    if (it.isString() && it.toStringRef() == "...") {
      if (ellipsis) throw UserError("index: only one '...' allowed");
      ellipsis = true;
      idx.emplace_back(Ellipsis);
      // dims after the ellipsis are counted from the end
      int64_t rest = 0;
      for (size_t j = k + 1; j < items.size(); ++j)
        if (items[j].isInt() || items[j].isList()) rest++;
      dim = t.dim() - rest;
    } else if (it.isString() && it.toStringRef() == "None") {
      idx.emplace_back(None);
    } else if (it.isInt()) {
      int64_t n = t.size(dim), i = it.toInt();
      if (i < -n || i >= n)
        throw UserError("index: index " + std::to_string(i) + " is out of range for dimension " + std::to_string(dim) +
                        " of size " + std::to_string(n) + " (shape " + shapeString(t.sizes()) + ")");
      idx.emplace_back(i);
      dim++;
    } else if (it.isList()) {
      auto s = it.toListRef();
      if (s.size() != 3) throw UserError("index: a slice must be [start, stop, step]");
      auto part = [&](size_t j) -> c10::optional<int64_t> {
        if (s[j].isNone()) return c10::nullopt;
        if (!s[j].isInt()) throw UserError("index: slice bounds must be integers or null");
        return s[j].toInt();
      };
      auto step = part(2);
      if (step && *step <= 0) throw UserError("index: slice step must be positive");
      idx.emplace_back(Slice(part(0), part(1), step));
      dim++;
    } else {
      throw UserError("index: unsupported item " + describe(it));
    }
  }
  return t.index(idx);
}

}  // namespace ts
