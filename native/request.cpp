// Request parsing: the packed wire form of a request (src/trace/wire.ts) read, checked word by
// word and turned into the plan the interpreter runs (traces' inputs, nodes with their args).
// Nodes are data (an op name, constant or referenced arguments, a site), so a graph can come
// from anywhere without running anyone's code.
#include "request.h"
#include "model_state.h"
#include <set>

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

// `.backward()`, `.grad` and `.grad = v`: each names a value of its own trace (a backward runs
// once the trace's forward is over: an earlier trace's graph is gone); one metric per invoke, as
// each invoke's gradients are its own rows of one backward pass.
template <class Where>
void checkGradNode(Node& n, Request& r, std::set<std::pair<int, int>>& metrics, const Where& where) {
  const bool bw = n.kind == NodeKind::Backward;
  const size_t want = n.kind == NodeKind::GradWrite ? 2 : 1;
  if (n.args.size() != want || n.args[0].ref < 0)
    throw UserError(where() + ": " + n.op + " takes " + (bw ? "the metric" : want == 2 ? "a graph value and its new gradient" : "a graph value"));
  const Node& t = r.nodes[n.args[0].ref];
  if (t.kind != NodeKind::Read && t.kind != NodeKind::Op && t.kind != NodeKind::Apply)
    throw UserError(where() + ": " + (bw ? "the metric" : "the value") + " must be a tensor computed in the trace (a gradient has no gradient here)");
  if (t.trace != n.trace)
    throw UserError(where() + ": " + (bw ? "the metric" : "the value") + " belongs to an earlier trace of the session; " +
                    "a backward runs inside the trace whose forward computed it (compute it in this trace)");
  if (!bw) {
    n.gradOf = t.id;
    return;
  }
  if (!metrics.insert({n.trace, n.invoke}).second)
    throw UserError(where() + ": a second .backward() in the same invoke: add the metrics and call .backward() once");
  Trace& tr = r.traces[n.trace];
  if (tr.backward < 0) tr.backward = n.id;
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
  std::set<std::pair<int, int>> metrics;  // (trace, invoke) with a .backward()
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
    else if (n.op == "backward") n.kind = NodeKind::Backward;
    else if (n.op == "grad") n.kind = NodeKind::GradRead;
    else if (n.op == "setGrad") n.kind = NodeKind::GradWrite;
    else if (n.op == "skip") n.kind = NodeKind::Skip;
    else if ((n.def = findOp(n.op))) n.kind = NodeKind::Op;
    else throw UserError(where() + ": unknown op");
    if (se >= 0 && se <= sb) throw UserError(where() + ": 'steps' must be [begin, end] with 0 <= begin < end, or end -1");
    n.stepBegin = (int)sb;
    n.stepEnd = (int)se;
    int64_t nargs = in.integer(0, 64, "argument count", where);
    n.args.reserve((size_t)nargs);
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
    if (n.kind == NodeKind::Skip) {  // skip(outputSite, inputSite), both by name
      int ids[2];
      for (int k = 0; k < 2; ++k) {
        if (n.args.size() != 2 || n.args[k].ref >= 0 || n.args[k].isList || !n.args[k].value.isString())
          throw UserError(where() + ": skip needs a module's output site and input site, by name");
        const auto& name = n.args[k].value.toStringRef();
        auto it = model.siteIds.find(name);
        if (it == model.siteIds.end() || (size_t)it->second >= model.hookSites)
          throw UserError(where() + ": site '" + name.substr(0, 200) + "' does not exist in this model");
        ids[k] = it->second;
      }
      n.site = ids[0];
      n.from = ids[1];
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
    if (n.kind == NodeKind::Backward || atGrad(n.kind)) checkGradNode(n, r, metrics, where);
  }
  for (const auto& n : r.nodes)
    if (atGrad(n.kind) && r.traces[n.trace].backward < 0)
      throw UserError(nodeWhere(n.id, n.op, n.loc) + ": this trace reads a gradient but calls no .backward(): call .backward() on a scalar metric in the same trace");
  if (!in.atEnd()) throw UserError("graph: " + std::to_string(in.pos()) + " words of code read, more follow the last node");
  return r;
}

}  // namespace ts
