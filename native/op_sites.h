// Operations inside modules (`.source`): listed from the inlined forward at load, their sites
// inserted, and modules skipped, in the graph copy a request runs (op_sites.cpp).
#pragma once
#include "site_graphs.h"

namespace ts {

// The site op's kind (torchsight::site), shared with site_graphs.cpp.
const c10::Symbol& siteKind();
// Lists the operations of `f`'s inlined graph (`m`'s forward) into f.ops and interns their sites.
void listOps(ForwardGraphs& f, torch::jit::Module& m, ModelState& s);

}  // namespace ts
