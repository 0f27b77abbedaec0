// Index specs ('0', ':, -1', '..., 0:4', 'None' in their wire form) applied to a tensor as a
// view, every bound checked first so no out-of-range index reaches ATen. Used by the `index`
// op and by the interpreter's reads of an invoke's rows.
#include "common.h"

namespace ts {

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
