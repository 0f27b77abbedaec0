// What every unit shares: values and errors crossing N-API (convert.h), the per-instance state
// (addon_data.h), and the op table (ops.cpp) that eager Tensor methods and the interpreter use.
#pragma once
#include "convert.h"

namespace ts {

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

}  // namespace ts
