// The intervention graph: parsed and validated whole on the JS thread, then run inside the
// forward. Nodes are data (an op name, constant or referenced arguments, a site), so a graph
// can come from anywhere without running anyone's code.
#include "runtime.h"
#include <ATen/CPUGeneratorImpl.h>

namespace ts {
namespace {

constexpr size_t kMaxNodes = 1 << 20;

std::string nodeWhere(int id, const std::string& op, const std::string& loc) {
  return "node " + std::to_string(id) + " (" + (op.empty() ? "?" : op) + (loc.empty() ? "" : " at " + loc) + ")";
}

// Reads an integer property; absent -> dflt.
int64_t intProp(const Napi::Object& o, Key k, const char* key, int64_t dflt, int64_t lo, int64_t hi, const std::string& where) {
  auto v = o.Get(ts::key(o.Env(), k));
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw UserError(where + ": '" + key + "' must be an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != std::floor(d) || d < (double)lo || d > (double)hi)
    throw UserError(where + ": '" + key + "' must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "], got " + std::to_string(d));
  return (int64_t)d;
}

// The packed graph (src/trace/wire.ts): `code`, a Float64Array of words, with tables of
// strings and tensors it points into. Reading it costs a few N-API calls in all instead of
// ~10 property reads a node. Every word is checked: the code may come from anywhere.
//   header: version, node count
//   node:   op (string), site, occ, invoke, save, stepBegin, stepEnd, loc (string or -1), nargs, args...
//   site:   -1 none, >= 0 a site id, <= -2 the site named by string -2 - site
//   arg:    tag, payload: 0 null | 1 bool b | 2 number x | 3 string k | 4 tensor k | 5 ref id | 6 list n, items...
constexpr int kPackVersion = 1;
enum Tag { TagNull = 0, TagBool = 1, TagNum = 2, TagStr = 3, TagTensor = 4, TagRef = 5, TagList = 6 };

class PackedReader {
 public:
  explicit PackedReader(const Napi::Object& graph) {
    auto code = graph.Get(key(graph.Env(), Key::code));
    if (!code.IsTypedArray() || code.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      throw UserError("graph: 'code' must be a Float64Array");
    auto ta = code.As<Napi::Float64Array>();
    w_ = ta.Data();
    n_ = ta.ElementLength();
    auto strings = graph.Get(key(graph.Env(), Key::strings)), tensors = graph.Get(key(graph.Env(), Key::tensors));
    if (!strings.IsArray() || !tensors.IsArray()) throw UserError("graph: 'strings' and 'tensors' must be arrays");
    strings_ = strings.As<Napi::Array>();
    tensors_ = tensors.As<Napi::Array>();
    if (strings_.Length() > (1u << 20) || tensors_.Length() > (1u << 20)) throw UserError("graph: tables too long");
    strCache_.resize(strings_.Length());
    strDone_.assign(strings_.Length(), 0);
  }
  size_t pos() const { return i_; }
  size_t remaining() const { return n_ - i_; }
  bool atEnd() const { return i_ == n_; }
  double word() {
    if (i_ >= n_) throw UserError("graph: the packed code ends early (word " + std::to_string(i_) + ")");
    return w_[i_++];
  }
  // An integer word in [lo, hi]; `what` and `where` name it in the error.
  template <class Where>
  int64_t integer(int64_t lo, int64_t hi, const char* what, const Where& where) {
    double d = word();
    if (!std::isfinite(d) || d != std::floor(d) || d < (double)lo || d > (double)hi)
      throw UserError(where() + ": '" + what + "' must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                      "], got " + (std::isfinite(d) ? std::to_string(d) : std::string("a non-finite number")));
    return (int64_t)d;
  }
  template <class Where>
  const std::string& str(int64_t k, const Where& where) {
    if (k < 0 || k >= (int64_t)strCache_.size()) throw UserError(where() + ": string " + std::to_string(k) + " is not in the table");
    if (!strDone_[k]) {
      auto v = strings_.Get((uint32_t)k);
      if (!v.IsString()) throw UserError(where() + ": string " + std::to_string(k) + " of the table is not a string");
      strCache_[k] = v.As<Napi::String>().Utf8Value();
      strDone_[k] = 1;
    }
    return strCache_[k];
  }
  template <class Where>
  at::Tensor tensor(int64_t k, const Where& where) {
    if (k < 0 || k >= (int64_t)tensors_.Length()) throw UserError(where() + ": tensor " + std::to_string(k) + " is not in the table");
    auto* tw = asTensor(tensors_.Get((uint32_t)k));
    if (!tw) throw UserError(where() + ": tensor " + std::to_string(k) + " of the table is not a Tensor");
    try {
      return tw->tensor();
    } catch (const UserError& e) {  // disposed: say which node's tensor
      throw UserError(where() + ": tensor " + std::to_string(k) + " of the table: " + e.what());
    }
  }

 private:
  const double* w_ = nullptr;
  size_t n_ = 0, i_ = 0;
  Napi::Array strings_, tensors_;
  std::vector<std::string> strCache_;
  std::vector<char> strDone_;
};

template <class Where>
Arg parseArg(PackedReader& in, int nodeId, std::vector<int>& deps, const Where& where, int depth) {
  if (depth > 16) throw UserError(where() + ": argument nested too deeply");
  Arg a;
  switch ((int)in.integer(0, 6, "argument tag", where)) {
    case TagNull:
      break;
    case TagBool:
      a.value = c10::IValue(in.integer(0, 1, "bool", where) == 1);
      break;
    case TagNum: {
      double d = in.word();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0) a.value = c10::IValue((int64_t)d);
      else a.value = c10::IValue(d);
      break;
    }
    case TagStr:
      a.value = c10::IValue(in.str(in.integer(0, INT32_MAX, "string", where), where));
      break;
    case TagTensor:
      a.value = c10::IValue(in.tensor(in.integer(0, INT32_MAX, "tensor", where), where));
      break;
    case TagRef: {
      double d = in.word();
      if (d != std::floor(d) || d < 0 || d >= nodeId)
        throw UserError(where() + ": a reference must point to an earlier node, got " +
                        (std::isfinite(d) ? std::to_string((int64_t)d) : std::string("a non-finite number")));
      a.ref = (int)d;
      deps.push_back(a.ref);
      break;
    }
    case TagList: {
      int64_t n = in.integer(0, 4096, "list length", where);
      bool anyRef = false;
      for (int64_t i = 0; i < n; ++i) {
        a.items.push_back(parseArg(in, nodeId, deps, where, depth + 1));
        anyRef = anyRef || a.items.back().ref >= 0 || a.items.back().isList;
      }
      if (anyRef) {
        a.isList = true;
      } else {
        std::vector<c10::IValue> values;
        for (auto& x : a.items) values.push_back(std::move(x.value));
        a.value = listValue(std::move(values));
        a.items.clear();
      }
      break;
    }
  }
  return a;
}

// Token ids, masks and positions: an Int32Array (what the tracer sends) or a BigInt64Array.
at::Tensor int64Input(const Napi::Object& t, Key k, const char* key, int64_t batch, int64_t seq, const std::string& where) {
  auto v = t.Get(ts::key(t.Env(), k));
  auto type = v.IsTypedArray() ? v.As<Napi::TypedArray>().TypedArrayType() : napi_uint8_clamped_array;
  if (type != napi_bigint64_array && type != napi_int32_array)
    throw UserError(where + ": '" + key + "' must be an Int32Array or a BigInt64Array");
  auto ta = v.As<Napi::TypedArray>();
  if ((int64_t)ta.ElementLength() != batch * seq)
    throw UserError(where + ": '" + key + "' has " + std::to_string(ta.ElementLength()) + " values, expected " +
                    std::to_string(batch * seq));
  auto out = at::empty({batch, seq}, at::kLong);
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  if (type == napi_bigint64_array) {
    std::memcpy(out.data_ptr(), src, (size_t)(batch * seq) * sizeof(int64_t));
  } else {
    auto* dst = out.data_ptr<int64_t>();
    for (int64_t i = 0; i < batch * seq; ++i) {
      int32_t x;
      std::memcpy(&x, src + i * sizeof(int32_t), sizeof x);
      dst[i] = x;
    }
  }
  return out;
}

}  // namespace

Request parseRequest(const Napi::Object& req, const ModelState& model) {
  Request r;
  c10::InferenceMode guard;  // the input tensors made here are used under InferenceMode
  r.recordSites = req.Get(key(req.Env(), Key::recordSites)).ToBoolean();
  r.returnLogits = req.Get(key(req.Env(), Key::returnLogits)).ToBoolean();
  auto cancel = req.Get(key(req.Env(), Key::cancel));
  if (!cancel.IsUndefined() && !cancel.IsNull()) {
    if (!cancel.IsTypedArray() || cancel.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        cancel.As<Napi::TypedArray>().ElementLength() < 1)
      throw UserError("graph: 'cancel' must be an Int32Array");
    // napi_get_typedarray_info gives the data pointer for SharedArrayBuffer-backed arrays too
    // (napi_get_arraybuffer_info refuses a SharedArrayBuffer)
    void* data = nullptr;
    napi_status st = napi_get_typedarray_info(req.Env(), cancel, nullptr, nullptr, &data, nullptr, nullptr);
    if (st != napi_ok || !data) throw UserError("graph: cannot read the 'cancel' flag");
    r.cancel = static_cast<const int32_t*>(data);
  }
  auto graphV = req.Get(key(req.Env(), Key::graph));
  auto tracesV = req.Get(key(req.Env(), Key::traces));
  if (!graphV.IsObject() || !tracesV.IsArray()) throw UserError("graph: expected {traces: [], graph: {code, strings, tensors}}");
  PackedReader in(graphV.As<Napi::Object>());
  auto header = [] { return std::string("graph"); };
  if (in.integer(0, INT32_MAX, "version", header) != kPackVersion)
    throw UserError("graph: packed with another version of torchsight (expected version " + std::to_string(kPackVersion) + ")");
  const int nodeCount = (int)in.integer(0, kMaxNodes, "node count", header);
  // every node takes at least 9 words: refuse a count the code cannot hold before allocating
  if ((size_t)nodeCount * 9 > in.remaining())
    throw UserError("graph: the packed code ends early (" + std::to_string(nodeCount) + " nodes need at least " +
                    std::to_string((size_t)nodeCount * 9) + " more words, " + std::to_string(in.remaining()) + " follow)");
  auto traces = tracesV.As<Napi::Array>();
  if (traces.Length() == 0 || traces.Length() > 4096) throw UserError("graph: a request needs 1 to 4096 traces");

  int expectBegin = 0;
  for (uint32_t ti = 0; ti < traces.Length(); ++ti) {
    std::string where = "trace " + std::to_string(ti);
    auto tv = traces.Get(ti);
    if (!tv.IsObject()) throw UserError(where + ": must be an object");
    auto t = tv.As<Napi::Object>();
    Trace tr;
    int64_t batch = intProp(t, Key::batch, "batch", -1, 1, 1 << 16, where);
    int64_t seq = intProp(t, Key::seq, "seq", -1, 1, 1 << 20, where);
    if (batch < 0 || seq < 0) throw UserError(where + ": 'batch' and 'seq' are required");
    if (batch * seq > (int64_t)1 << 26) throw UserError(where + ": input too large");
    tr.ids = int64Input(t, Key::ids, "ids", batch, seq, where);
    tr.mask = int64Input(t, Key::mask, "mask", batch, seq, where);
    tr.pos = int64Input(t, Key::pos, "pos", batch, seq, where);
    auto ids = tr.ids.data_ptr<int64_t>();
    for (int64_t i = 0; i < batch * seq; ++i)
      if (ids[i] < 0 || ids[i] >= model.vocabSize)
        throw UserError(where + ": token id " + std::to_string(ids[i]) + " at position " + std::to_string(i % seq) +
                        " of row " + std::to_string(i / seq) + " is outside the vocabulary [0, " +
                        std::to_string(model.vocabSize) + ")");
    auto pos = tr.pos.data_ptr<int64_t>();
    for (int64_t i = 0; i < batch * seq; ++i)
      if (pos[i] < 0 || pos[i] >= model.maxPositions)
        throw UserError(where + ": position id " + std::to_string(pos[i]) + " is outside [0, " +
                        std::to_string(model.maxPositions) + ")");
    auto inv = t.Get(key(req.Env(), Key::invokes));
    if (inv.IsArray()) {
      auto ia = inv.As<Napi::Array>();
      int64_t next = 0;
      for (uint32_t k = 0; k < ia.Length(); ++k) {
        auto p = ia.Get(k);
        if (!p.IsArray() || p.As<Napi::Array>().Length() != 2) throw UserError(where + ": invokes must be [start, count] pairs");
        auto pa = p.As<Napi::Array>();
        auto s = jsToIValue(pa.Get(0u), where), c = jsToIValue(pa.Get(1u), where);
        if (!s.isInt() || !c.isInt() || s.toInt() != next || c.toInt() < 1 || s.toInt() + c.toInt() > batch)
          throw UserError(where + ": invoke " + std::to_string(k) + " must cover consecutive rows of the batch");
        tr.invokes.emplace_back(s.toInt(), c.toInt());
        next += c.toInt();
      }
    }
    tr.begin = (int)intProp(t, Key::begin, "begin", -1, 0, kMaxNodes, where);
    tr.end = (int)intProp(t, Key::end, "end", -1, 0, kMaxNodes, where);
    if (tr.begin != expectBegin || tr.end < tr.begin || tr.end > nodeCount)
      throw UserError(where + ": node range [" + std::to_string(tr.begin) + ", " + std::to_string(tr.end) +
                      ") must follow the previous trace's and lie within the graph");
    expectBegin = tr.end;
    tr.stop = t.Get(key(req.Env(), Key::stop)).ToBoolean();
    r.traces.push_back(std::move(tr));
  }
  if (expectBegin != nodeCount) throw UserError("graph: every node must belong to a trace");

  r.nodes.resize(nodeCount);
  for (const auto& tr : r.traces)
    for (int i = tr.begin; i < tr.end; ++i) r.nodes[i].trace = (int)(&tr - &r.traces[0]);

  for (int i = 0; i < nodeCount; ++i) {
    Node& n = r.nodes[i];
    n.id = i;
    // error prefixes are built only when an error needs one (from the fields read so far)
    auto where = [&] { return nodeWhere(i, n.op.substr(0, 64), n.loc); };
    int64_t opStr = in.integer(0, INT32_MAX, "op", where);
    int64_t site = in.integer(-(1 << 21), INT32_MAX, "site", where);
    n.occ = (int)in.integer(0, 1 << 20, "occ", where);
    n.invoke = (int)in.integer(-1, 4096, "invoke", where);
    n.save = in.integer(0, 1, "save", where) == 1;
    int64_t sb = in.integer(0, 1 << 20, "steps", where), se = in.integer(-1, 1 << 20, "steps", where);
    int64_t loc = in.integer(-1, INT32_MAX, "loc", where);
    n.loc = loc >= 0 ? in.str(loc, where).substr(0, 1024) : "\u0001" + std::to_string(i) + "\u0001";
    n.op = in.str(opStr, where);
    if (n.op == "read") n.kind = NodeKind::Read;
    else if (n.op == "write") n.kind = NodeKind::Write;
    else if (n.op == "apply") n.kind = NodeKind::Apply;
    else if ((n.def = findOp(n.op))) n.kind = NodeKind::Op;
    else throw UserError(where() + ": unknown op");
    if (se >= 0 && se <= sb) throw UserError(where() + ": 'steps' must be [begin, end] with 0 <= begin < end, or end -1");
    n.stepBegin = (int)sb;
    n.stepEnd = (int)se;
    int64_t nargs = in.integer(0, 64, "argument count", where);
    for (int64_t k = 0; k < nargs; ++k) n.args.push_back(parseArg(in, n.id, n.deps, where, 0));
    for (int d : n.deps)
      if (r.nodes[d].trace > n.trace) throw UserError(where() + ": refers to a node of a later trace");
    const Trace& tr = r.traces[n.trace];
    if (n.invoke >= 0 && n.invoke >= (int)tr.invokes.size())
      throw UserError(where() + ": invoke " + std::to_string(n.invoke) + " does not exist in its trace");
    if (n.kind == NodeKind::Read || n.kind == NodeKind::Write) {
      if (site == -1) throw UserError(where() + ": needs a 'site'");
      if (site >= 0) {
        if (site >= (int64_t)model.siteNames.size()) throw UserError(where() + ": site " + std::to_string(site) + " does not exist in this model");
        n.site = (int)site;
      } else {
        const std::string& name = in.str(-2 - site, where);
        auto it = model.siteIds.find(name);
        if (it == model.siteIds.end()) throw UserError(where() + ": site '" + name.substr(0, 200) + "' does not exist in this model");
        n.site = it->second;
      }
      if (n.kind == NodeKind::Read && !n.args.empty()) throw UserError(where() + ": read takes no arguments");
      if (n.kind == NodeKind::Write && n.args.size() != 1) throw UserError(where() + ": write takes one value");
    } else if (site != -1) {
      throw UserError(where() + ": only read and write nodes have a site");
    }
    if (n.kind == NodeKind::Op) {
      if ((int)n.args.size() < n.def->minArgs || (int)n.args.size() > n.def->maxArgs)
        throw UserError(where() + ": expected " + std::to_string(n.def->minArgs) + " to " + std::to_string(n.def->maxArgs) +
                        " arguments (" + n.def->signature + "), got " + std::to_string(n.args.size()));
      if (n.def->inplace && n.args[0].ref < 0)
        throw UserError(where() + ": an in-place op needs a graph value to change");
    }
    if (n.kind == NodeKind::Apply) {
      if (n.args.empty() || n.args[0].ref >= 0 || n.args[0].isList || !n.args[0].value.isString())
        throw UserError(where() + ": apply needs a module path first");
      const auto& path = n.args[0].value.toStringRef();
      auto it = model.applyRules.find(path);
      if (it == model.applyRules.end())
        throw UserError(where() + ": module '" + path.substr(0, 200) + "' cannot be applied (no apply rule in the manifest)");
      if (n.args.size() < 2) throw UserError(where() + ": apply needs at least one input");
    }
  }
  if (!in.atEnd()) throw UserError("graph: " + std::to_string(in.pos()) + " words of code read, more follow the last node");
  return r;
}

// ---- interpreter ------------------------------------------------------------------------

Interpreter::Interpreter(ModelState& m, Request& r) : m_(m), r_(r) {
  values_.resize(r.nodes.size());
  steps_.resize(r.nodes.size());
  done_.assign(r.nodes.size(), 0);
  aliasEvent_.assign(r.nodes.size(), -1);
}

c10::IValue Interpreter::resolve(const Arg& a) const {
  if (a.ref >= 0) return values_[a.ref];
  if (!a.isList) return a.value;
  std::vector<c10::IValue> items;
  for (const auto& x : a.items) items.push_back(resolve(x));
  return listValue(std::move(items));
}

void Interpreter::fail(const Node& n, const std::string& msg) {
  std::string m = msg;
  // runOp prefixes messages with the op name: put the user's location right after it.
  std::string prefix = n.op + ": ";
  if (m.rfind(prefix, 0) == 0) m = m.substr(prefix.size());
  error = n.op + (n.loc.empty() ? "" : " at " + n.loc) + ": " + m;
  throw UserError(error);
}

// The rows of an invoke (a view); the whole tensor when the trace has one invoke or the
// value is not batched.
at::Tensor Interpreter::rows(const Node& n, const at::Tensor& x) const {
  const Trace& tr = r_.traces[n.trace];
  if (n.invoke < 0 || tr.invokes.size() <= 1 || x.dim() == 0 || x.size(0) != batch_) return x;
  auto [s, c] = tr.invokes[n.invoke];
  return x.narrow(0, s, c);
}

c10::IValue Interpreter::apply(const Node& n, std::vector<c10::IValue>& args) {
  const auto& path = args[0].toStringRef();
  const ApplyRule& rule = m_.applyRules.at(path);
  auto sub = m_.submodule(path);
  auto param = [&](const char* name) -> at::Tensor {
    if (!sub.hasattr(name)) return at::Tensor();
    auto v = sub.attr(name);
    return v.isTensor() ? v.toTensor() : at::Tensor();
  };
  if (rule.kind == "method") {
    std::vector<c10::IValue> in(args.begin() + 1, args.end());
    currentForward()->suppress++;
    try {
      auto out = sub.forward(in);
      currentForward()->suppress--;
      return out;
    } catch (...) {
      currentForward()->suppress--;
      throw;
    }
  }
  if (args.size() != 2 || !args[1].isTensor()) fail(n, "module '" + path + "' takes one tensor");
  at::Tensor x = args[1].toTensor();
  if (x.device() != m_.device) x = x.to(m_.device);
  at::Tensor w = param("weight"), b = param("bias");
  if (rule.kind == "linear") {
    if (x.size(-1) != w.size(1)) fail(n, "'" + path + "' expects a last dimension of " + std::to_string(w.size(1)) + ", got shape " + shapeString(x.sizes()));
    return at::linear(x.to(w.scalar_type()), w, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt);
  }
  if (rule.kind == "conv1d") {
    if (x.size(-1) != w.size(0)) fail(n, "'" + path + "' expects a last dimension of " + std::to_string(w.size(0)) + ", got shape " + shapeString(x.sizes()));
    auto y = at::matmul(x.to(w.scalar_type()), w);
    return b.defined() ? y + b : y;
  }
  if (rule.kind == "layer_norm") {
    if (x.size(-1) != w.size(0)) fail(n, "'" + path + "' expects a last dimension of " + std::to_string(w.size(0)) + ", got shape " + shapeString(x.sizes()));
    return at::layer_norm(x.to(w.scalar_type()), w.sizes(), w, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt, rule.eps);
  }
  if (rule.kind == "rms_norm") {
    if (x.size(-1) != w.size(0)) fail(n, "'" + path + "' expects a last dimension of " + std::to_string(w.size(0)) + ", got shape " + shapeString(x.sizes()));
    auto xf = x.to(at::kFloat);
    auto y = xf * at::rsqrt(xf.pow(2).mean({-1}, true) + rule.eps);
    return w * y.to(x.scalar_type());
  }
  if (rule.kind == "embedding") {
    if (at::isFloatingType(x.scalar_type())) fail(n, "'" + path + "' takes integer token ids");
    auto mn = x.numel() ? x.min().item<int64_t>() : 0, mx = x.numel() ? x.max().item<int64_t>() : 0;
    if (mn < 0 || mx >= w.size(0)) fail(n, "'" + path + "': ids must be in [0, " + std::to_string(w.size(0)) + ")");
    return at::embedding(w, x.to(at::kLong));
  }
  if (rule.kind == "act") {
    if (rule.fn == "gelu_new" || rule.fn == "gelu_pytorch_tanh")
      return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * at::pow(x, 3.0))));
    if (rule.fn == "gelu") return at::gelu(x);
    if (rule.fn == "silu") return at::silu(x);
    if (rule.fn == "relu") return at::relu(x);
    if (rule.fn == "tanh") return at::tanh(x);
    fail(n, "unknown activation '" + rule.fn + "'");
  }
  if (rule.kind == "identity") return x;
  fail(n, "module '" + path + "' has apply kind '" + rule.kind + "', which cannot run");
}

void Interpreter::exec(Node& n, c10::IValue* live) {
  try {
    switch (n.kind) {
      case NodeKind::Read:
        values_[n.id] = rows(n, live->toTensor());
        aliasEvent_[n.id] = event_;
        break;
      case NodeKind::Write: {
        at::Tensor x = live->toTensor();
        at::Tensor target = rows(n, x);
        c10::IValue v = resolve(n.args[0]);
        at::Tensor nv;
        if (v.isInt() || v.isDouble() || v.isBool()) {
          nv = at::full_like(target, v.isBool() ? c10::Scalar(v.toBool()) : v.isInt() ? c10::Scalar(v.toInt()) : c10::Scalar(v.toDouble()));
        } else if (v.isTensor()) {
          nv = v.toTensor().to(x.device(), x.scalar_type());
          if (!nv.sizes().equals(target.sizes())) {
            if (!at::is_expandable_to(nv.sizes(), target.sizes()))
              fail(n, "cannot replace a value of shape " + shapeString(target.sizes()) + " with shape " + shapeString(nv.sizes()));
            nv = nv.expand(target.sizes()).contiguous();
          }
        } else {
          fail(n, "can only write a tensor or a number, got " + describe(v));
        }
        if (target.is_same(x) || target.numel() == x.numel()) {
          *live = c10::IValue(nv);
        } else {  // one invoke's rows of a shared batch: write into a copy of the batch
          at::Tensor y = x.clone();
          rows(n, y).copy_(nv);
          *live = c10::IValue(y);
        }
        break;
      }
      case NodeKind::Apply: {
        std::vector<c10::IValue> args;
        for (const auto& a : n.args) args.push_back(resolve(a));
        values_[n.id] = apply(n, args);
        break;
      }
      case NodeKind::Op: {
        std::vector<c10::IValue> args;
        for (const auto& a : n.args) args.push_back(resolve(a));
        int self = n.args[0].ref;
        if (n.def->inplace && self >= 0 && aliasEvent_[self] >= 0 && aliasEvent_[self] != event_)
          fail(n, "changes an activation in place after the forward has moved past its module: a value it needs "
                  "comes from a module that runs later (move the read of that value before, or use a separate trace)");
        values_[n.id] = runOp(*n.def, args);
        if (n.def->view && self >= 0) aliasEvent_[n.id] = aliasEvent_[self];
        break;
      }
    }
  } catch (const UserError& e) {
    if (error.empty()) fail(n, e.what());
    throw;
  } catch (const std::exception& e) {
    fail(n, errorMessage(e));
  }
  done_[n.id] = 1;
  remaining_--;
}

// Runs every pending node that needs no site and whose inputs are ready.
void Interpreter::runReady() {
  std::vector<int> still;
  for (int i : pending_) {
    Node& n = r_.nodes[i];
    bool ready = n.kind != NodeKind::Read && n.kind != NodeKind::Write;
    for (int d : n.deps) ready = ready && done_[d];
    if (ready) exec(n, nullptr);
    else still.push_back(i);
  }
  pending_.swap(still);
}

void Interpreter::fire(int site, c10::IValue& x) {
  event_++;
  if (r_.cancelled()) {
    error = "aborted";
    throw Cancelled();
  }
  if (r_.recordSites) firedSites.push_back(m_.siteNames[site]);
  int occ = counts_[site]++;
  if (!interest_[site] || !x.isTensor()) return;
  // pending_ is compacted in place (no allocation at every interesting site); exec never
  // touches pending_, so the write index can trail the read index safely
  size_t keep = 0;
  for (size_t k = 0; k < pending_.size(); ++k) {
    int i = pending_[k];
    Node& n = r_.nodes[i];
    bool atSite = n.kind == NodeKind::Read || n.kind == NodeKind::Write;
    if (atSite && (n.site != site || n.occ != occ)) {
      pending_[keep++] = i;
      continue;
    }
    bool ready = true;
    for (int d : n.deps) ready = ready && done_[d];
    if (!ready) {
      if (atSite)
        fail(n, "the value written at '" + m_.siteNames[site] +
                    "' depends on a module that runs later in the forward; it is not ready yet");
      pending_[keep++] = i;
      continue;
    }
    exec(n, &x);
  }
  pending_.resize(keep);
  if (r_.traces[trace_].stop && remaining_ == 0) {
    stopped_ = true;  // the JIT may wrap what we throw; this flag says it was a stop
    throw StopForward();
  }
}

bool Interpreter::active(const Node& n, int step) const {
  return step >= n.stepBegin && (n.stepEnd < 0 || step < n.stepEnd);
}

// One forward of trace `ti` at generation step `step` (0 for a plain trace): the nodes active
// at that step run at their sites; returns the forward's output (None when stopped early).
// The site graph for this forward's sites of interest, when built (see SiteGraphs); a second
// request for the same sites also records a build for its worker to queue.
std::shared_ptr<torch::jit::GraphFunction> Interpreter::siteGraphFor(ForwardGraphs& f) {
  if (!f.graph) return nullptr;
  std::string key(1, f.kind);
  for (size_t i = 0; i < interest_.size(); ++i) {
    if (!interest_[i]) continue;
    int32_t id = (int32_t)i;
    key.append(reinterpret_cast<const char*>(&id), sizeof id);
  }
  bool want = false;
  bool newRequest = std::find(siteKeys_.begin(), siteKeys_.end(), key) == siteKeys_.end();
  if (newRequest) siteKeys_.push_back(key);
  auto fn = m_.siteGraphs->find(key, newRequest, want);
  if (want && newRequest) builds.push_back(SiteGraphBuild{key, f.graph, interest_, m_.siteGraphs});  // once per key
  return fn;
}

c10::IValue Interpreter::forwardStep(int ti, int step, ForwardGraphs& f, std::vector<c10::IValue> inputs) {
  Trace& tr = r_.traces[ti];
  trace_ = ti;
  batch_ = inputs[0].toTensor().size(0);
  if (r_.cancelled()) {
    error = "aborted";
    throw Cancelled();
  }
  std::fill(counts_.begin(), counts_.end(), 0);
  std::fill(interest_.begin(), interest_.end(), 0);
  pending_.clear();
  remaining_ = 0;
  for (int i = tr.begin; i < tr.end; ++i) {
    Node& n = r_.nodes[i];
    if (!active(n, step)) continue;
    if (step > n.stepBegin) {  // a node of several steps runs anew at each
      done_[i] = 0;
      values_[i] = c10::IValue();
      aliasEvent_[i] = -1;
    }
    pending_.push_back(i);
    remaining_++;
    if (n.site >= 0) interest_[n.site] = 1;
  }
  runReady();  // nodes that need no site (ops on tensors passed in)
  bool stopped = false;
  stopped_ = false;
  c10::IValue out;
  // Unless a site list or a cancel check at every module is asked for, the forward need not
  // call every site: with nothing waiting at a site, the graph without sites does the same work
  // without ~30 hook calls a layer; otherwise a graph keeping only the sites waited at, once
  // built. Generation always carries a cancel flag (stop strings use it too): there an abort
  // ends at the next step, or the next site kept.
  bool quiet = !r_.recordSites && (!r_.cancel || generating_);
  if (remaining_ > 0 || !tr.stop) {
    try {
      torch::jit::GraphFunction* fn = f.withSites.get();
      std::shared_ptr<torch::jit::GraphFunction> special;  // held while it runs (the cache may drop it)
      if (quiet && remaining_ == 0 && f.plain) fn = f.plain.get();
      else if (quiet && m_.siteGraphs && (special = siteGraphFor(f))) fn = special.get();
      if (fn) {
        inputs.insert(inputs.begin(), f.module._ivalue());
        out = (*fn)(std::move(inputs));
      } else {
        out = f.module.forward(inputs);
      }
    } catch (const StopForward&) {
      stopped = true;
    } catch (const std::exception& e) {
      if (!error.empty()) throw UserError(error);
      if (stopped_) stopped = true;
      else throw UserError("forward failed: " + errorMessage(e));
    }
    if (stopped_) stopped = true;
  } else {
    stopped = true;
  }
  runReady();
  for (int i : pending_) {
    const Node& n = r_.nodes[i];
    bool depsDone = true;
    for (int d : n.deps) depsDone = depsDone && done_[d];
    if (!depsDone) continue;  // an earlier node is the cause
    if (n.site >= 0) {
      int c = counts_[n.site];
      std::string why = stopped ? "the trace stopped before it"
                        : c == 0 ? "the module never ran (or its value was unused and pruned by the export)"
                                 : "it fired " + std::to_string(c) + " time(s), call " + std::to_string(n.occ) + " does not exist";
      fail(n, "site '" + m_.siteNames[n.site] + "' never fired" + (step ? " at step " + std::to_string(step) : "") + ": " + why);
    }
    fail(n, "could not run");
  }
  for (int i = tr.begin; i < tr.end; ++i) {
    const Node& n = r_.nodes[i];
    if (active(n, step) && n.save && n.multiStep()) steps_[i].push_back(values_[i]);
    // activations of this forward are plain tensors from now on
    aliasEvent_[i] = -1;
  }
  return out;
}

static at::Tensor firstTensor(const c10::IValue& out) {
  if (out.isTuple() && !out.toTupleRef().elements().empty() && out.toTupleRef().elements()[0].isTensor())
    return out.toTupleRef().elements()[0].toTensor();
  if (out.isTensor()) return out.toTensor();
  return at::Tensor();
}

struct ContextScope {
  ForwardContext ctx;
  ForwardContext* prev;
  ContextScope(ModelState& m, Interpreter* interp) : prev(currentForward()) {
    ctx.model = &m;
    ctx.interp = interp;
    currentForward() = &ctx;  // also for applied modules outside the forward (their sites stay quiet)
  }
  ~ContextScope() { currentForward() = prev; }
};

void Interpreter::run() {
  counts_.assign(m_.siteNames.size(), 0);
  interest_.assign(m_.siteNames.size(), 0);
  ContextScope scope(m_, this);
  for (size_t ti = 0; ti < r_.traces.size(); ++ti) {
    Trace& tr = r_.traces[ti];
    auto dev = m_.device;
    logits = firstTensor(forwardStep((int)ti, 0, m_.forward, {tr.ids.to(dev), tr.mask.to(dev), tr.pos.to(dev)}));
  }
}

// ---- generation ---------------------------------------------------------------------------

static at::Tensor sampleNext(const at::Tensor& last, const GenOptions& o, at::Generator& gen) {
  at::Tensor l = last.to(at::kCPU, at::kFloat);
  if (o.temperature <= 0) return l.argmax(-1);
  l = l / o.temperature;
  const double inf = std::numeric_limits<double>::infinity();
  int64_t vocab = l.size(-1);
  if (o.topK > 0 && o.topK < vocab) {
    auto kth = std::get<0>(l.topk(o.topK, -1)).select(-1, o.topK - 1).unsqueeze(-1);
    l = l.masked_fill(l < kth, -inf);
  }
  if (o.topP > 0 && o.topP < 1) {
    auto sorted = l.sort(-1, true);
    auto values = std::get<0>(sorted), index = std::get<1>(sorted);
    auto probs = values.softmax(-1);
    auto before = probs.cumsum(-1) - probs;  // mass of the tokens ranked above: keep while < p
    values = values.masked_fill(before >= o.topP, -inf);
    l = at::full_like(l, -inf).scatter(-1, index, values);
  }
  return at::multinomial(l.softmax(-1), 1, false, gen).squeeze(-1);
}

void Interpreter::generate(const GenOptions& o, const std::function<void(int, const std::vector<int64_t>&)>& onStep) {
  counts_.assign(m_.siteNames.size(), 0);
  interest_.assign(m_.siteNames.size(), 0);
  ContextScope scope(m_, this);
  Trace& tr = r_.traces[0];
  auto dev = m_.device;
  const int64_t B = tr.ids.size(0);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  bool cache = o.useCache && m_.hasStep;
  usedCache = cache;
  generating_ = true;
  at::Tensor ids = tr.ids.to(dev), mask = tr.mask.to(dev), pos = tr.pos.to(dev);
  at::Tensor pastK, pastV;
  if (cache) {
    auto opts = at::TensorOptions().device(dev).dtype(m_.dtype);
    pastK = at::zeros({m_.cacheLayers, B, m_.cacheHeads, 0, m_.cacheHeadDim}, opts);
    pastV = at::zeros({m_.cacheLayers, B, m_.cacheHeads, 0, m_.cacheHeadDim}, opts);
  }
  at::Tensor cur = ids, curPos = pos;
  std::vector<char> finished(B, 0);
  tokens.assign(B, {});
  for (int step = 0; step < o.maxNewTokens; ++step) {
    if (r_.cancel && __atomic_load_n(r_.cancel, __ATOMIC_RELAXED) == 2) break;  // a stop string was seen
    c10::IValue out = cache ? forwardStep(0, step, m_.stepForward, {cur, mask, curPos, pastK, pastV})
                            : forwardStep(0, step, m_.forward, {cur, mask, curPos});
    if (out.isNone()) throw UserError("generate: the forward stopped early (tracer.stop() has no meaning in generation)");
    at::Tensor all = firstTensor(out);
    if (step == 0) logits = all;
    at::Tensor next = sampleNext(all.select(1, all.size(1) - 1), o, gen);  // [B] on the CPU
    auto acc = next.accessor<int64_t, 1>();
    std::vector<int64_t> emitted(B, -1);
    bool allDone = true;
    for (int64_t b = 0; b < B; ++b) {
      if (finished[b]) {
        next[b] = o.padId;
        continue;
      }
      int64_t t = acc[b];
      tokens[b].push_back(t);
      emitted[b] = t;
      if (std::find(o.stopIds.begin(), o.stopIds.end(), t) != o.stopIds.end()) finished[b] = 1;
      allDone = allDone && finished[b];
    }
    stepsRun = step + 1;
    if (onStep) onStep(step, emitted);
    if (allDone) break;
    at::Tensor nextDev = next.to(dev).unsqueeze(1);
    mask = at::cat({mask, at::ones({B, 1}, mask.options())}, 1);
    at::Tensor newPos = (mask.sum(-1, true) - 1).clamp_min(0);
    if (cache) {
      const auto& el = out.toTupleRef().elements();
      pastK = el.at(1).toTensor();
      pastV = el.at(2).toTensor();
      cur = nextDev;
      curPos = newPos;
    } else {
      cur = at::cat({cur, nextDev}, 1);
      curPos = (mask.cumsum(-1) - 1).clamp_min(0);
    }
  }
}

std::vector<std::pair<int, c10::IValue>> Interpreter::saved() const {
  std::vector<std::pair<int, c10::IValue>> out;
  for (const auto& n : r_.nodes) {
    if (!n.save) continue;
    if (n.multiStep()) {  // one value per step it ran at
      c10::impl::GenericList l(c10::AnyType::get());
      for (const auto& v : steps_[n.id]) l.push_back(v);
      out.emplace_back(n.id, c10::IValue(l));
    } else if (done_[n.id]) {
      out.emplace_back(n.id, values_[n.id]);
    }
  }
  return out;
}

}  // namespace ts
