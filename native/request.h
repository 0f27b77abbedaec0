// A request as the interpreter runs it: the traces' inputs and the intervention graph's nodes,
// parsed and validated whole from the packed wire form on the JS thread (request.cpp).
#pragma once
#include "common.h"

namespace ts {

struct ModelState;

// The request's cancel flag, an Int32Array on a SharedArrayBuffer that JS sets
// (src/native.ts names the same values).
enum class CancelFlag : int32_t {
  Running = 0,
  Abort = 1,  // an AbortSignal fired: throws at the next site, or before the next forward
  Stop = 2,   // generation saw a stop string: no step after this one
};

// An argument: a constant, a reference to an earlier node, or a list mixing both.
struct Arg {
  int ref = -1;
  c10::IValue value;
  bool isList = false;
  std::vector<Arg> items;
};

// Read and Write run at a site's call; GradRead and GradWrite (`.grad`, `.grad = v`) when the
// backward reaches the value they name (autograd.cpp); Backward marks a trace's metric.
// Skip: the module whose output site is `site` does not run; that site takes the value of
// input site `from` (one invoke: the forward's graph is edited; several: the write the tracer
// records with it patches the invoke's rows, and the module runs for the others).
enum class NodeKind { Read, Write, Apply, Op, Backward, GradRead, GradWrite, Skip };
// Whether a node waits for an event (a site's call, a gradient) rather than for its inputs alone.
inline bool atEvent(NodeKind k) {
  return k == NodeKind::Read || k == NodeKind::Write || k == NodeKind::GradRead || k == NodeKind::GradWrite;
}
inline bool atGrad(NodeKind k) { return k == NodeKind::GradRead || k == NodeKind::GradWrite; }

struct Node {
  int id = 0;
  std::string op;
  NodeKind kind = NodeKind::Op;
  const OpDef* def = nullptr;
  std::vector<Arg> args;
  int site = -1;  // site id for Read/Write; the output site for Skip
  int from = -1;  // Skip: the input site whose value the output takes
  int occ = 0;    // which call of the site (a module called twice fires twice)
  int invoke = -1;
  int trace = 0;
  int gradOf = -1;  // GradRead/GradWrite: the node whose gradient it reads or replaces
  std::string loc;
  bool save = false;
  int stepBegin = 0, stepEnd = 1;  // generation steps it applies at; end -1: every step
  bool multiStep() const { return stepEnd != stepBegin + 1; }
  std::vector<int> deps;  // referenced node ids
};

struct Trace {
  at::Tensor ids, mask, pos;              // [batch, seq] int64
  std::vector<std::pair<int64_t, int64_t>> invokes;  // rows (start, count)
  int begin = 0, end = 0;                 // node range
  bool stop = false;
  int backward = -1;  // a Backward node of this trace: it runs with autograd (autograd.cpp)
};

struct Request {
  std::vector<Trace> traces;
  std::vector<Node> nodes;
  bool recordSites = false;
  bool returnLogits = false;  // the last trace's logits back to JS (only forwardRaw asks: they can be large)
  // Cancellation: the CancelFlag JS sets (null when the request has none). Checked at every
  // site, so a running forward stops at the next module.
  const int32_t* cancel = nullptr;
  CancelFlag cancelFlag() const {
    return cancel ? static_cast<CancelFlag>(__atomic_load_n(cancel, __ATOMIC_RELAXED)) : CancelFlag::Running;
  }
  bool cancelled() const { return cancelFlag() == CancelFlag::Abort; }
};

// Thrown when the request's cancel flag is set.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("torchsight: aborted") {}
};

// Parses and validates a whole request from its JS form (on the JS thread).
Request parseRequest(const Napi::Object& req, const ModelState& model);

}  // namespace ts
