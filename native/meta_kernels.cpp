// Meta kernels (shape and dtype only) for the aten ops libtorch 1.13 has none for in C++
// (Python's torch registers them from Python, which a C++ process never runs): the ops
// model.scan meets in the exports' forwards (embedding's index_select, where, rsub) and common
// intervention ops. Each is registered only where the running libtorch has no Meta kernel of
// its own, so on 2.x, which has them, nothing is added.
#include "scan.h"
#include <ATen/ExpandUtils.h>
#include <torch/library.h>

namespace ts {
namespace {

at::Tensor like(const at::Tensor& self) { return at::empty(self.sizes(), self.options()); }

at::Tensor broadcast(const at::Tensor& a, const at::Tensor& b, c10::ScalarType dtype) {
  return at::empty(at::infer_size(a.sizes(), b.sizes()), a.options().dtype(dtype));
}

at::Tensor indexSelect(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  TORCH_CHECK(index.dim() <= 1, "index_select(): Index is supposed to be a vector");
  TORCH_CHECK(index.scalar_type() == at::kLong || index.scalar_type() == at::kInt,
              "index_select(): Expected dtype int32 or int64 for index");
  if (self.dim() == 0) return like(self);
  dim = c10::maybe_wrap_dim(dim, self.dim());
  auto sizes = self.sizes().vec();
  sizes[dim] = index.numel();
  return at::empty(sizes, self.options());
}
at::Tensor relu(const at::Tensor& self) { return like(self); }
at::Tensor flip(const at::Tensor& self, at::IntArrayRef) { return like(self); }
at::Tensor roll(const at::Tensor& self, at::IntArrayRef, at::IntArrayRef) { return like(self); }
at::Tensor hardtanh(const at::Tensor& self, const at::Scalar&, const at::Scalar&) { return like(self); }
at::Tensor isnan(const at::Tensor& self) { return at::empty(self.sizes(), self.options().dtype(at::kBool)); }
at::Tensor rsub(const at::Tensor& self, const at::Tensor& other, const at::Scalar&) {
  return broadcast(self, other, at::result_type(self, other));
}
at::Tensor floorDivide(const at::Tensor& self, const at::Tensor& other) {
  return broadcast(self, other, at::result_type(self, other));
}
at::Tensor where(const at::Tensor& cond, const at::Tensor& self, const at::Tensor& other) {
  auto sizes = at::infer_size(at::infer_size(cond.sizes(), self.sizes()), other.sizes());
  return at::empty(sizes, self.options().dtype(at::result_type(self, other)));
}
at::Tensor reduceAll(const at::Tensor& self) {
  TORCH_CHECK(self.numel() > 0, "max(): Expected reduction dim to be specified for input.numel() == 0.");
  return at::empty({}, self.options());
}
at::Tensor dot(const at::Tensor& self, const at::Tensor& other) {
  TORCH_CHECK(self.dim() == 1 && other.dim() == 1, "1D tensors expected, but got ", self.dim(), "D and ", other.dim(), "D tensors");
  TORCH_CHECK(self.numel() == other.numel(), "inconsistent tensor size, expected tensor [", self.numel(),
              "] and src [", other.numel(), "] to have the same number of elements, but got ", self.numel(), " and ",
              other.numel(), " elements respectively");
  return at::empty({}, self.options());
}
at::Tensor prod(const at::Tensor& self, c10::optional<at::ScalarType> dtype) {
  return at::empty({}, self.options().dtype(dtype ? *dtype : at::isIntegralType(self.scalar_type(), true) ? at::kLong : self.scalar_type()));
}
// std/var over dims: the shape of a sum over the same dims (sum has a meta kernel)
at::Tensor spread(const at::Tensor& self, at::OptionalIntArrayRef dim, c10::optional<int64_t>, bool keepdim) {
  std::vector<int64_t> all(self.dim());
  for (int64_t i = 0; i < self.dim(); ++i) all[i] = i;
  auto s = at::sum(self, dim ? *dim : at::IntArrayRef(all), keepdim);
  return at::empty(s.sizes(), self.options().dtype(c10::toRealValueType(self.scalar_type())));
}
std::tuple<at::Tensor, at::Tensor> spreadMean(const at::Tensor& self, at::OptionalIntArrayRef dim, c10::optional<int64_t> c, bool keepdim) {
  auto s = spread(self, dim, c, keepdim);
  return {s, at::empty(s.sizes(), self.options())};
}

// layer_norm's kernel (1.13 has none for meta: its fallback runs native_batch_norm, which has
// none either), with the CPU kernel's shape checks and messages
std::tuple<at::Tensor, at::Tensor, at::Tensor> layerNorm(const at::Tensor& input, at::IntArrayRef shape,
                                                         const c10::optional<at::Tensor>& weight,
                                                         const c10::optional<at::Tensor>& bias, double) {
  const int64_t n = (int64_t)shape.size(), d = input.dim();
  TORCH_CHECK(n >= 1, "Expected normalized_shape to be at least 1-dimensional, i.e., containing at least one element, but got normalized_shape = ", shape);
  TORCH_CHECK(!weight || !weight->defined() || weight->sizes().equals(shape),
              "Expected weight to be of same shape as normalized_shape, but got weight of shape ", weight->sizes(), " and normalized_shape = ", shape);
  TORCH_CHECK(!bias || !bias->defined() || bias->sizes().equals(shape),
              "Expected bias to be of same shape as normalized_shape, but got bias of shape ", bias->sizes(), " and normalized_shape = ", shape);
  if (d < n || !input.sizes().slice(d - n).equals(shape)) {
    std::stringstream ss;
    ss << "Given normalized_shape=" << shape << ", expected input with shape [*";
    for (auto s : shape) ss << ", " << s;
    ss << "], but got input of size" << input.sizes();
    TORCH_CHECK(false, ss.str());
  }
  std::vector<int64_t> stat(input.sizes().begin(), input.sizes().end() - n);
  stat.resize(d, 1);
  return {like(input), at::empty(stat, input.options()), at::empty(stat, input.options())};
}

// repeat_interleave(x, n, dim) (Llama's grouped key/value heads): 1.13 builds a tensor of
// repeats and sums it, which needs values
at::Tensor repeatInterleave(const at::Tensor& self, int64_t repeats, c10::optional<int64_t> dim, c10::optional<int64_t>) {
  TORCH_CHECK(repeats >= 0, "repeats can not be negative");
  if (!dim) return at::empty({self.numel() * repeats}, self.options());
  int64_t d = c10::maybe_wrap_dim(*dim, self.dim());
  auto sizes = self.sizes().vec();
  if (self.dim() == 0) return at::empty({repeats}, self.options());
  sizes[d] *= repeats;
  return at::empty(sizes, self.options());
}

}  // namespace

void ensureMetaKernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    static auto* lib = new torch::Library(torch::Library::IMPL, "aten", c10::DispatchKey::Meta, __FILE__, __LINE__);
    auto add = [](const char* name, const char* overload, auto fn) {
      auto op = c10::Dispatcher::singleton().findOp(c10::OperatorName(std::string("aten::") + name, overload));
      if (!op || op->hasKernelForDispatchKey(c10::DispatchKey::Meta)) return;
      try {
        std::string full = *overload ? std::string(name) + "." + overload : std::string(name);
        lib->impl(full.c_str(), fn);
      } catch (...) {  // a schema this version spells otherwise: that op stays without one
      }
    };
    add("index_select", "", TORCH_FN(indexSelect));
    add("native_layer_norm", "", TORCH_FN(layerNorm));
    add("repeat_interleave", "self_int", TORCH_FN(repeatInterleave));
    add("relu", "", TORCH_FN(relu));
    add("flip", "", TORCH_FN(flip));
    add("roll", "", TORCH_FN(roll));
    add("hardtanh", "", TORCH_FN(hardtanh));
    add("isnan", "", TORCH_FN(isnan));
    add("rsub", "Tensor", TORCH_FN(rsub));
    add("floor_divide", "", TORCH_FN(floorDivide));
    add("where", "self", TORCH_FN(where));
    add("max", "", TORCH_FN(reduceAll));
    add("min", "", TORCH_FN(reduceAll));
    add("dot", "", TORCH_FN(dot));
    add("vdot", "", TORCH_FN(dot));
    add("prod", "", TORCH_FN(prod));
    add("std", "correction", TORCH_FN(spread));
    add("var", "correction", TORCH_FN(spread));
    add("std_mean", "correction", TORCH_FN(spreadMean));
    add("var_mean", "correction", TORCH_FN(spreadMean));
  });
}

}  // namespace ts
