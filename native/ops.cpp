// The op kernels (op_<name>) and the readers that check arguments; the table that maps each
// name to its kernel is generated from ops.json (ops.gen.inc, scripts/gen-ops.mjs). The eager
// Tensor methods and the graph interpreter both run ops through runOp, so the two cannot drift.
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

// Readers for the generated table (ops.gen.inc), one per argument kind of ops.json.
c10::Scalar scalarArg(const Args& a, size_t i) {
  if (i < a.size()) return scalar(a[i], i);
  throw ArgError{i, "a number"};
}
c10::Scalar scalarArg(const Args& a, size_t i, c10::Scalar dflt) { return has(a, i) ? scalar(a[i], i) : dflt; }

c10::optional<int64_t> optInteger(const Args& a, size_t i) {
  if (!has(a, i)) return c10::nullopt;
  return integer(a, i);
}

c10::optional<std::vector<int64_t>> optInts(const Args& a, size_t i) {
  if (!has(a, i)) return c10::nullopt;
  return ints(a, i);
}

// a number as is, or a tensor
IV tensorOrNumber(const Args& a, size_t i) {
  if (i < a.size() && isNumber(a[i])) return a[i];
  return IV(tensor(a, i));
}

// max/min's dim: absent, a tensor (elementwise), or an integer
IV intOrTensor(const Args& a, size_t i) {
  if (!has(a, i)) return IV();
  if (a[i].isTensor()) return IV(tensor(a, i));
  return IV(integer(a, i));
}

std::string dtypeOrDevice(const Args& a, size_t i) {
  if (i < a.size() && a[i].isString()) return a[i].toStringRef();
  throw ArgError{i, "a dtype or device name"};
}

c10::optional<std::string> optDtypeOrDevice(const Args& a, size_t i) {
  if (!has(a, i)) return c10::nullopt;
  return dtypeOrDevice(a, i);
}

// The other operand of a binary op moved to self's device when it is on the CPU and self is
// not (a steering vector made on the host works on a CUDA activation).
at::Tensor onSelfDevice(const at::Tensor& self, at::Tensor o) {
  if (o.device() != self.device() && o.device().is_cpu()) o = o.to(self.device());
  return o;
}

// The other operand of an in-place op, moved to the live tensor's device. Its dtype is kept:
// ATen computes in the promoted type and rounds once into self (float32 into float16 works,
// float into int64 is refused), as PyTorch does.
at::Tensor inplaceOther(const at::Tensor& self, at::Tensor o) {
  if (o.device() != self.device()) o = o.to(self.device());
  return o;
}

void checkDim(const at::Tensor& t, int64_t d, size_t argIndex) {
  int64_t n = std::max<int64_t>(t.dim(), 1);
  if (d < -n || d >= n)
    throw ArgError{argIndex, "a dimension in [" + std::to_string(-n) + ", " + std::to_string(n - 1) +
                                 "] for a tensor of shape " + shapeString(t.sizes())};
}

// A number operand (already checked by its reader) as a Scalar.
c10::Scalar num(const IV& v) { return scalar(v, 1); }

// ---- kernels: op_<name>, one per op of ops.json, with the arguments read and checked -------

// arithmetic (other: tensor or number)
IV op_add(const at::Tensor& self, const IV& other, const c10::Scalar& alpha) {
  return other.isTensor() ? at::add(self, onSelfDevice(self, other.toTensor()), alpha) : at::add(self, num(other), alpha);
}
IV op_sub(const at::Tensor& self, const IV& other, const c10::Scalar& alpha) {
  return other.isTensor() ? at::sub(self, onSelfDevice(self, other.toTensor()), alpha) : at::sub(self, num(other), alpha);
}
IV op_mul(const at::Tensor& self, const IV& other) {
  return other.isTensor() ? at::mul(self, onSelfDevice(self, other.toTensor())) : at::mul(self, num(other));
}
IV op_div(const at::Tensor& self, const IV& other) {
  return other.isTensor() ? at::div(self, onSelfDevice(self, other.toTensor())) : at::div(self, num(other));
}
IV op_pow(const at::Tensor& self, const IV& exponent) {
  return exponent.isTensor() ? at::pow(self, onSelfDevice(self, exponent.toTensor())) : at::pow(self, num(exponent));
}
IV op_matmul(const at::Tensor& self, const at::Tensor& other) {
  if (self.dim() == 0 || other.dim() == 0) throw ArgError{1, "tensors of at least one dimension"};
  return at::matmul(self, onSelfDevice(self, other));
}
IV op_neg(const at::Tensor& t) { return t.neg(); }
IV op_abs(const at::Tensor& t) { return t.abs(); }
IV op_exp(const at::Tensor& t) { return t.exp(); }
IV op_log(const at::Tensor& t) { return t.log(); }
IV op_sqrt(const at::Tensor& t) { return t.sqrt(); }
IV op_clone(const at::Tensor& t) { return t.clone(); }
IV op_float(const at::Tensor& t) { return t.to(at::kFloat); }
IV op_half(const at::Tensor& t) { return t.to(at::kHalf); }
IV op_bfloat16(const at::Tensor& t) { return t.to(at::kBFloat16); }
IV op_contiguous(const at::Tensor& t) { return t.contiguous(); }
IV op_detach(const at::Tensor& t) { return t.detach(); }

// reductions with PyTorch's (dim=None, keepdim=False)
std::vector<int64_t> allDims(const at::Tensor& t) {
  std::vector<int64_t> d(t.dim());
  for (int64_t k = 0; k < t.dim(); ++k) d[k] = k;
  return d;
}
std::vector<int64_t> checkedDims(const at::Tensor& t, const c10::optional<std::vector<int64_t>>& dim, size_t argIndex) {
  for (auto x : *dim) checkDim(t, x, argIndex);
  return *dim;
}
IV op_mean(const at::Tensor& self, const c10::optional<std::vector<int64_t>>& dim, bool keepdim) {
  auto t = at::isFloatingType(self.scalar_type()) ? self : self.to(at::kFloat);  // mean of ints is a float
  if (!dim) return keepdim ? at::mean(t, allDims(t), true) : t.mean();
  return at::mean(t, checkedDims(t, dim, 1), keepdim);
}
IV op_sum(const at::Tensor& t, const c10::optional<std::vector<int64_t>>& dim, bool keepdim) {
  if (!dim) return keepdim ? at::sum(t, allDims(t), true) : t.sum();
  return at::sum(t, checkedDims(t, dim, 1), keepdim);
}
// max/min: whole tensor, elementwise with another tensor, or along dim -> (values, indices).
IV extremum(const at::Tensor& t, const IV& dim, bool keepdim, bool isMax) {
  if (dim.isNone()) return isMax ? t.max() : t.min();
  if (dim.isTensor()) {
    auto o = onSelfDevice(t, dim.toTensor());
    return isMax ? at::maximum(t, o) : at::minimum(t, o);
  }
  int64_t d = dim.toInt();
  checkDim(t, d, 1);
  auto r = isMax ? t.max(d, keepdim) : t.min(d, keepdim);
  return c10::ivalue::Tuple::create({IV(std::get<0>(r)), IV(std::get<1>(r))});
}
IV op_max(const at::Tensor& t, const IV& dim, bool keepdim) { return extremum(t, dim, keepdim, true); }
IV op_min(const at::Tensor& t, const IV& dim, bool keepdim) { return extremum(t, dim, keepdim, false); }
IV op_norm(const at::Tensor& t, double p, const c10::optional<std::vector<int64_t>>& dim, bool keepdim) {
  if (!dim) {
    if (!keepdim) return at::norm(t, c10::Scalar(p));
    return at::norm(t, c10::optional<c10::Scalar>(c10::Scalar(p)), allDims(t), true);
  }
  return at::norm(t, c10::optional<c10::Scalar>(c10::Scalar(p)), checkedDims(t, dim, 2), keepdim);
}
IV op_softmax(const at::Tensor& t, int64_t dim) {
  checkDim(t, dim, 1);
  return at::softmax(t, dim);
}
IV op_logSoftmax(const at::Tensor& t, int64_t dim) {
  checkDim(t, dim, 1);
  return at::log_softmax(t, dim);
}
IV op_argmax(const at::Tensor& t, c10::optional<int64_t> dim, bool keepdim) {
  if (t.numel() == 0) throw ArgError{0, "a non-empty tensor"};
  if (dim) checkDim(t, *dim, 1);
  return at::argmax(t, dim, keepdim);
}
IV op_topk(const at::Tensor& t, int64_t k, int64_t dim, bool largest, bool sorted) {
  checkDim(t, dim, 2);
  int64_t n = t.dim() == 0 ? 1 : t.size(dim < 0 ? dim + t.dim() : dim);
  if (k < 0 || k > n) throw ArgError{1, "in [0, " + std::to_string(n) + "]"};
  auto r = at::topk(t, k, dim, largest, sorted);
  return c10::ivalue::Tuple::create({IV(std::get<0>(r)), IV(std::get<1>(r))});
}
IV op_cosineSimilarity(const at::Tensor& t, const at::Tensor& other, int64_t dim, double eps) {
  return at::cosine_similarity(t, onSelfDevice(t, other), dim, eps);
}

// shapes and views
IV op_reshape(const at::Tensor& t, const std::vector<int64_t>& shape) { return t.reshape(shape); }
IV op_view(const at::Tensor& t, const std::vector<int64_t>& shape) { return t.view(shape); }
IV op_transpose(const at::Tensor& t, int64_t dim0, int64_t dim1) {
  checkDim(t, dim0, 1);
  checkDim(t, dim1, 2);
  return t.transpose(dim0, dim1);
}
IV op_permute(const at::Tensor& t, const std::vector<int64_t>& dims) {
  if ((int64_t)dims.size() != t.dim())
    throw ArgError{1, std::to_string(t.dim()) + " dimensions for shape " + shapeString(t.sizes())};
  return t.permute(dims);
}
IV op_squeeze(const at::Tensor& t, c10::optional<int64_t> dim) {
  if (!dim) return t.squeeze();
  checkDim(t, *dim, 1);
  return t.squeeze(*dim);
}
IV op_unsqueeze(const at::Tensor& t, int64_t dim) {
  int64_t n = t.dim() + 1;
  if (dim < -n || dim >= n) throw ArgError{1, "a dimension in [" + std::to_string(-n) + ", " + std::to_string(n - 1) + "]"};
  return t.unsqueeze(dim);
}
IV op_flatten(const at::Tensor& t, int64_t startDim, int64_t endDim) {
  checkDim(t, startDim, 1);
  checkDim(t, endDim, 2);
  return t.flatten(startDim, endDim);
}
IV op_index(const at::Tensor& t, const IV& spec) { return applyIndex(t, spec); }
IV op_to(const at::Tensor& t, const std::string& first, const c10::optional<std::string>& second) {
  auto device = t.device();
  auto dtype = t.scalar_type();
  for (const std::string* s : {&first, second ? &*second : nullptr}) {
    if (!s) continue;
    if (*s == "cpu" || s->rfind("cuda", 0) == 0) device = parseDevice(*s);
    else dtype = parseDtype(*s);
  }
  return t.to(device, dtype);
}
IV op_cat(const std::vector<at::Tensor>& ts, int64_t dim) { return at::cat(ts, dim); }
IV op_stack(const std::vector<at::Tensor>& ts, int64_t dim) { return at::stack(ts, dim); }

// reading
IV op_shape(const at::Tensor& t) { return IV(c10::List<int64_t>(t.sizes().vec())); }
IV op_size(const at::Tensor& t, c10::optional<int64_t> dim) {
  if (!dim) return IV(c10::List<int64_t>(t.sizes().vec()));
  checkDim(t, *dim, 1);
  return IV(t.size(*dim));
}
IV op_item(const at::Tensor& t) {
  if (t.numel() != 1) throw ArgError{0, "a tensor with one element"};
  auto s = t.item();
  if (s.isBoolean()) return IV(s.toBool());
  if (s.isIntegral(false)) return IV(s.toLong());
  return IV(s.toDouble());
}
// element i of a tuple or list result (topk's values/indices, max along a dim)
IV op_getitem(const IV& self, int64_t i) {
  if (self.isTuple() || self.isList()) {
    auto items = self.isTuple() ? self.toTupleRef().elements().vec() : self.toListRef().vec();
    int64_t n = (int64_t)items.size();
    if (i < -n || i >= n) throw ArgError{1, "an index in [" + std::to_string(-n) + ", " + std::to_string(n - 1) + "]"};
    return items[i < 0 ? i + n : i];
  }
  throw ArgError{0, "a tuple or list"};
}

// in place, on the live tensor
IV op_copy_(const at::Tensor& self, const at::Tensor& src) {
  auto t = self;
  auto s = inplaceOther(t, src);  // copy_ casts to self's dtype, as in PyTorch
  if (!s.sizes().equals(t.sizes()) && !at::is_expandable_to(s.sizes(), t.sizes()))
    throw UserError("copy_: shapes " + shapeString(t.sizes()) + " and " + shapeString(s.sizes()) +
                    ": the source cannot be broadcast to the destination");
  return t.copy_(s);
}
IV op_add_(const at::Tensor& self, const IV& other, const c10::Scalar& alpha) {
  auto t = self;
  return other.isTensor() ? t.add_(inplaceOther(t, other.toTensor()), alpha) : t.add_(num(other), alpha);
}
IV op_sub_(const at::Tensor& self, const IV& other, const c10::Scalar& alpha) {
  auto t = self;
  return other.isTensor() ? t.sub_(inplaceOther(t, other.toTensor()), alpha) : t.sub_(num(other), alpha);
}
IV op_mul_(const at::Tensor& self, const IV& other) {
  auto t = self;
  return other.isTensor() ? t.mul_(inplaceOther(t, other.toTensor())) : t.mul_(num(other));
}
IV op_div_(const at::Tensor& self, const IV& other) {
  auto t = self;
  return other.isTensor() ? t.div_(inplaceOther(t, other.toTensor())) : t.div_(num(other));
}
IV op_fill_(const at::Tensor& self, const c10::Scalar& value) {
  auto t = self;
  return t.fill_(value);
}
IV op_zero_(const at::Tensor& self) {
  auto t = self;
  return t.zero_();
}

// the argument readers and the table, from ops.json
#include "ops.gen.inc"

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

}  // namespace ts
