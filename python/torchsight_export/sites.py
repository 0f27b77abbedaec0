"""The ``torchsight::hook(Tensor x, str site) -> Tensor`` identity op and the module hooks that
mark every module's inputs and outputs with it."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import torch

SCHEMA = "hook(Tensor x, str site) -> Tensor"
_LIB = None  # keep the Library alive: dropping it would unregister the op on newer torch


def _identity(x, site):
    # A fresh alias, not ``x`` itself: torch.jit.trace maps tensor objects to graph values, so
    # returning ``x`` would re-bind every later use of the original tensor (a residual add, the
    # mask read by the next layer) to this site's output. With an alias only the code that got the
    # hooked value reads the site, as in eager PyTorch; no extra node is recorded.
    return x.view_as(x)


def ensure_hook_op() -> None:
    """Define ``torchsight::hook`` once per process (safe to call repeatedly)."""
    global _LIB
    if _LIB is not None:
        return
    try:
        torch.ops.torchsight.hook  # defined elsewhere already (another copy of this module, or C++)
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchsight", "DEF")
    lib.define(SCHEMA)
    for key in ("CPU", "CUDA"):
        try:
            lib.impl("hook", _identity, key)
        except RuntimeError:
            if key == "CPU":
                raise
    _LIB = lib


def hook(x: torch.Tensor, site: str) -> torch.Tensor:
    return torch.ops.torchsight.hook(x, site)


def _is_model_output(value: Any) -> bool:
    """A transformers ModelOutput (an ordered dict of its non-None fields, indexable like a tuple)."""
    return isinstance(value, dict) and hasattr(value, "to_tuple") and hasattr(value, "__dataclass_fields__")


def describe(value: Any, site: Optional[str]) -> dict:
    """Manifest STRUCT of a value seen by a hook, with site names as ``mark`` assigns them. A
    transformers ModelOutput is a tuple of its fields that are set, as ``output[i]`` in Python."""
    if _is_model_output(value):
        return {"kind": "tuple", "items": [describe(v, f"{site}:{i}") for i, v in enumerate(value.values())]}
    if isinstance(value, torch.Tensor):
        return {"kind": "tensor", "shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", ""),
                "site": site, "pruned": False}
    if isinstance(value, tuple):
        return {"kind": "tuple", "items": [describe(v, f"{site}:{i}") for i, v in enumerate(value)]}
    if value is None:
        return {"kind": "none"}
    return {"kind": "other", "type": type(value).__name__}


def _mark_value(value: Any, site: str, fired: Optional[List[str]]):
    if _is_model_output(value):
        return type(value)(**{k: _mark_value(v, f"{site}:{i}", fired) for i, (k, v) in enumerate(value.items())})
    if isinstance(value, torch.Tensor):
        if fired is not None:
            fired.append(site)
        return hook(value, site)
    if isinstance(value, tuple):
        items = [_mark_value(v, f"{site}:{i}", fired) for i, v in enumerate(value)]
        if hasattr(value, "_fields"):  # namedtuple
            return type(value)(*items)
        if type(value) is not tuple:
            try:
                return type(value)(items)
            except Exception:
                return tuple(items)
        return tuple(items)
    return value


class Recorder:
    """State shared by the hooks: whether to record, and what was seen."""

    def __init__(self):
        self.recording = False
        self.fired: List[str] = []
        self.calls: Dict[str, int] = {}
        self.first_inputs: Dict[str, tuple] = {}
        self.first_output: Dict[str, Any] = {}


def mark(model: torch.nn.Module, rec: Recorder) -> List[Any]:
    """Register a forward pre-hook and a forward hook on every module; returns the handles."""
    ensure_hook_op()
    handles = []

    def make(path: str):
        def pre(mod, args):
            fired = rec.fired if rec.recording else None
            if rec.recording:
                rec.calls[path] = rec.calls.get(path, 0) + 1
                if path not in rec.first_inputs:
                    rec.first_inputs[path] = args
            return tuple(_mark_value(a, f"{path}:input:{i}", fired) for i, a in enumerate(args))

        def post(mod, args, out):
            fired = rec.fired if rec.recording else None
            if rec.recording and path not in rec.first_output:
                rec.first_output[path] = out
            if isinstance(out, torch.Tensor):
                return _mark_value(out, f"{path}:output", fired)
            if isinstance(out, tuple) or _is_model_output(out):
                return _mark_value(out, f"{path}:output", fired)
            return out

        return pre, post

    for path, mod in model.named_modules():
        pre, post = make(path)
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    return handles


def graph_sites(traced) -> List[str]:
    """Site names of the ``torchsight::hook`` calls in a traced module's inlined graph, in order."""
    sites = []
    for node in traced.inlined_graph.nodes():
        if node.kind() == "torchsight::hook":
            site_value = list(node.inputs())[1]
            sites.append(site_value.toIValue())
    return sites
