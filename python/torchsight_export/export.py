"""export_model: trace an HF-style causal LM with hook sites and write a torchsight model directory."""
from __future__ import annotations

import ast
import contextlib
import inspect
import json
import linecache
import math
import os
import shutil
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .bpe import BPETokenizer
from .hf import HFAdapter, UnsupportedArchitecture, is_transformers_model
from .hf.masks import traceable_masks
from .sites import Recorder, describe, ensure_hook_op, graph_sites, mark

VERSION = "0.1.0"
DEFAULT_EXAMPLE_TEXT = "The Eiffel Tower is in the city of"
_ARG_NAMES = ["input_ids", "attention_mask", "position_ids"]


class ExportError(RuntimeError):
    """The model cannot be exported as asked."""


class ExportVerificationError(ExportError):
    """The traced module does not reproduce the eager model."""


# --------------------------------------------------------------------------------------------
# small helpers

def _dtype_of(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
             "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    key = str(dtype).replace("torch.", "").lower()
    if key not in names:
        raise ExportError(f"unsupported dtype {dtype!r}; use float32, float16 or bfloat16")
    return names[key]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _leaves(value: Any) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        out: List[torch.Tensor] = []
        for v in value:
            out.extend(_leaves(v))
        return out
    return []


def _structure(value: Any):
    if isinstance(value, torch.Tensor):
        return "T"
    if isinstance(value, (tuple, list)):
        return tuple(_structure(v) for v in value)
    return "N"


def _logits_of(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    raise ExportError(f"cannot find logits in the model output of type {type(out).__name__}")


def _tol(dtype: torch.dtype, ref: torch.Tensor) -> float:
    base = 1e-4 if dtype == torch.float32 else 2e-2
    scale = float(ref.detach().abs().max()) if ref.numel() else 1.0
    return base * max(1.0, scale)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    d = (a.detach().float() - b.detach().float()).abs().max()
    return float(d)


def _close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> bool:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return False
    if a.shape != b.shape:
        return False
    if a.dtype.is_floating_point or b.dtype.is_floating_point:
        if torch.isnan(a.float()).any() or torch.isnan(b.float()).any():
            return bool(torch.equal(torch.isnan(a.float()), torch.isnan(b.float()))) and \
                _max_diff(torch.nan_to_num(a.float()), torch.nan_to_num(b.float())) <= _tol(dtype, torch.nan_to_num(a.float()))
        return _max_diff(a, b) <= _tol(dtype, a)
    return bool(torch.equal(a, b))


def padded_batch(prompts: Sequence[Sequence[int]], pad_id: int = 0):
    """Left-pad prompts: returns ``(input_ids, attention_mask, position_ids)``, int64 ``[batch, seq]``;
    ``position_ids = cumsum(mask) - 1`` clamped at 0."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        if len(p):
            ids[r, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[r, width - len(p):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def _enclosing_function(filename: str, lineno: int) -> Optional[str]:
    try:
        source = "".join(linecache.getlines(filename))
        tree = ast.parse(source)
    except Exception:
        return None
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            end = getattr(node, "end_lineno", None) or node.lineno
            if node.lineno <= lineno <= end and (best is None or node.lineno > best.lineno):
                best = node
    return best.name if best is not None else None


def _describe_warnings(records) -> List[str]:
    seen, out = set(), []
    for w in records:
        key = (w.filename, w.lineno)
        if key in seen:
            continue
        seen.add(key)
        fn = _enclosing_function(w.filename, w.lineno)
        line = linecache.getline(w.filename, w.lineno).strip()
        msg = str(w.message).splitlines()[0]
        where = f"{w.filename}:{w.lineno}" + (f" in {fn}()" if fn else "")
        out.append(f"{where}: {line!r}: {msg}")
    return out


# --------------------------------------------------------------------------------------------
# tokenizer

def _prepare_tokenizer(tokenizer, outdir: str):
    """Write outdir/tokenizer.json; return (encode(text) -> ids, special ids guessed, tokenizer.json dict)."""
    dst = os.path.join(outdir, "tokenizer.json")
    specials: Dict[str, Optional[int]] = {}
    if tokenizer is None:
        return None, specials, None
    if isinstance(tokenizer, (str, os.PathLike)):
        src = os.fspath(tokenizer)
        if os.path.isdir(src):
            src = os.path.join(src, "tokenizer.json")
        if not os.path.isfile(src):
            raise ExportError(f"tokenizer file not found: {src}")
        if os.path.abspath(src) != os.path.abspath(dst):
            shutil.copyfile(src, dst)
        with open(dst, "r", encoding="utf-8") as f:
            data = json.load(f)
        try:
            bpe = BPETokenizer.from_dict(data)
            encode = bpe.encode
        except (ValueError, KeyError) as e:
            def encode(text, _e=e):
                raise ExportError(f"the built-in encoder cannot read {src} ({_e}); pass a Hugging Face "
                                  "tokenizer object or example_ids instead")
        return encode, specials, data
    # a Hugging Face tokenizer object
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "save"):
        backend.save(dst)
    elif hasattr(tokenizer, "save_pretrained"):
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save_pretrained(tmp)
            src = os.path.join(tmp, "tokenizer.json")
            if not os.path.isfile(src):
                raise ExportError("the tokenizer did not write a tokenizer.json (a slow tokenizer?); "
                                  "load it with use_fast=True")
            shutil.copyfile(src, dst)
    else:
        raise ExportError(f"unsupported tokenizer object {type(tokenizer).__name__}")
    for name in ("bos", "eos", "pad"):
        v = getattr(tokenizer, f"{name}_token_id", None)
        specials[name] = int(v) if isinstance(v, int) else None
    with open(dst, "r", encoding="utf-8") as f:
        data = json.load(f)
    return (lambda text: list(tokenizer.encode(text))), specials, data


_SPECIAL_NAMES = {
    "bos": ["<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "<|endoftext|>"],
    "eos": ["<|end_of_text|>", "<|eot_id|>", "</s>", "<eos>", "<|endoftext|>", "<|im_end|>"],
    "pad": ["<pad>", "<|pad|>", "<|finetune_right_pad_id|>"],
}


def _special_tokens(given, from_tok, config, tok_data) -> Dict[str, Optional[int]]:
    out: Dict[str, Optional[int]] = {"bos": None, "eos": None, "pad": None}
    cfg = config or {}
    for name in out:
        v = cfg.get(f"{name}_token_id") if isinstance(cfg, dict) else None
        if isinstance(v, list):
            v = v[0] if v else None
        if isinstance(v, int):
            out[name] = v
    if tok_data:
        added = {t.get("content"): t.get("id") for t in tok_data.get("added_tokens", [])}
        for name, candidates in _SPECIAL_NAMES.items():
            if out[name] is None:
                for c in candidates:
                    if c in added:
                        out[name] = int(added[c])
                        break
    for name, v in (from_tok or {}).items():
        if v is not None:
            out[name] = v
    for name, v in (given or {}).items():
        if name not in out:
            raise ExportError(f"unknown special token kind {name!r}; use bos, eos, pad")
        out[name] = None if v is None else int(v)
    if out["pad"] is None:
        out["pad"] = out["eos"]
    return out


# --------------------------------------------------------------------------------------------
# apply: how to run one module on new inputs without its hooks

def _traced_submodule(traced, path: str):
    sub = traced
    if not path:
        return sub
    for part in path.split("."):
        try:
            sub = getattr(sub, part)
        except AttributeError:
            sub = sub._modules[part]
    return sub


def _traced_method(tsub, name: str):
    """A traced (sub)module's compiled method, callable from Python (traced submodules refuse
    ``__call__``; the C++ method is what the native side runs)."""
    c = getattr(tsub, "_c", None)
    if c is not None and hasattr(c, "_get_method"):
        return c._get_method(name)
    return getattr(tsub, name)


def _traced_param(tsub, name: str):
    try:
        v = getattr(tsub, name)
    except (AttributeError, RuntimeError):
        return None
    return v if isinstance(v, torch.Tensor) else None


_ACTS = {
    "NewGELUActivation": "gelu_new", "GELUTanh": "gelu_new", "PytorchGELUTanh": "gelu_new",
    "FastGELUActivation": "gelu_new", "GELUPytorchTanh": "gelu_new", "GELUActivation": "gelu",
    "SiLUActivation": "silu", "SiLU": "silu", "ReLU": "relu", "Tanh": "tanh",
}


def _gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


_ACT_FNS = {"gelu_new": _gelu_new, "gelu": F.gelu, "silu": F.silu, "relu": F.relu, "tanh": torch.tanh}


def _rms(x, weight, eps):
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)


def _param_candidate(mod: torch.nn.Module):
    """(apply dict, fn(x, tsub) -> y) for a module of a known parametrised/param-free kind, else None."""
    cls = type(mod).__name__
    if isinstance(mod, torch.nn.Linear):
        return {"kind": "linear"}, lambda x, t: F.linear(x, _traced_param(t, "weight"),
                                                         _traced_param(t, "bias") if mod.bias is not None else None)
    if isinstance(mod, torch.nn.LayerNorm):
        shape = tuple(mod.normalized_shape)
        return {"kind": "layer_norm", "eps": float(mod.eps)}, lambda x, t: F.layer_norm(
            x, shape, _traced_param(t, "weight") if mod.weight is not None else None,
            _traced_param(t, "bias") if mod.bias is not None else None, mod.eps)
    if isinstance(mod, torch.nn.Embedding) and mod.max_norm is None:
        return {"kind": "embedding"}, lambda x, t: F.embedding(x, _traced_param(t, "weight"))
    if cls == "Conv1D" and isinstance(getattr(mod, "weight", None), torch.Tensor) and mod.weight.dim() == 2:
        def conv1d(x, t):
            w = _traced_param(t, "weight")
            b = _traced_param(t, "bias")
            y = x.reshape(-1, x.shape[-1]) @ w
            if b is not None:
                y = y + b
            return y.reshape(*x.shape[:-1], w.shape[1])
        return {"kind": "conv1d"}, conv1d
    if cls.endswith("RMSNorm") and isinstance(getattr(mod, "weight", None), torch.nn.Parameter):
        eps = getattr(mod, "eps", getattr(mod, "variance_epsilon", None))
        if isinstance(eps, (int, float)):
            return {"kind": "rms_norm", "eps": float(eps)}, lambda x, t: _rms(x, _traced_param(t, "weight"), float(eps))
    fn = None
    if isinstance(mod, torch.nn.GELU):
        fn = "gelu_new" if getattr(mod, "approximate", "none") == "tanh" else "gelu"
    elif cls in _ACTS:
        fn = _ACTS[cls]
    if fn is not None:
        f = _ACT_FNS[fn]
        return {"kind": "act", "fn": fn}, lambda x, t: f(x)
    if isinstance(mod, (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout,
                        torch.nn.Identity)):
        return {"kind": "identity"}, lambda x, t: x
    return None


def _short_error(e: Exception) -> str:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if not lines:
        return type(e).__name__
    # TorchScript errors start with a generic line and end with the real one
    pick = next((l for l in reversed(lines) if "Error" in l or "expected" in l), lines[-1])
    return pick[:240]


def _error_with_type(e: Exception) -> str:
    msg = _short_error(e)
    return msg if msg.startswith(type(e).__name__) else f"{type(e).__name__}: {msg}"


def _decide_apply(path: str, mod: torch.nn.Module, traced, rec: Recorder, dtype: torch.dtype) -> dict:
    if path not in rec.first_inputs or path not in rec.first_output:
        return {"kind": "none", "reason": "module was not called in the example forward"}
    args = rec.first_inputs[path]
    out = rec.first_output[path]
    try:
        tsub = _traced_submodule(traced, path)
    except (AttributeError, KeyError):
        return {"kind": "none", "reason": "module is not present in the traced model"}
    cand = _param_candidate(mod)
    if cand is not None and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
        spec, fn = cand
        try:
            with torch.no_grad():
                y = fn(args[0], tsub)
            if _close(y, out, dtype):
                return spec
        except Exception:
            pass
    # generic: the traced submodule's own forward
    leaves = _leaves(args)
    if not _leaves(out):
        return {"kind": "none", "reason": "module output holds no tensor"}
    try:
        with torch.no_grad():
            res = _traced_method(tsub, "forward")(*leaves)
    except Exception as e:
        return {"kind": "none", "reason": f"traced forward does not take the eager inputs ({_short_error(e)})"}
    e_leaves, t_leaves = _leaves(out), _leaves(res)
    if len(e_leaves) != len(t_leaves):
        return {"kind": "none", "reason": f"traced forward returns {len(t_leaves)} tensors, eager "
                                          f"{len(e_leaves)} (outputs pruned)"}
    if not all(_close(t, e, dtype) for t, e in zip(t_leaves, e_leaves)):
        return {"kind": "none", "reason": "traced forward gives different values than eager (its inputs are "
                                          "probably in another order than the eager arguments)"}
    flattened = isinstance(out, tuple) and _structure(out) != _structure(res)
    return {"kind": "method", "outputFlattened": bool(flattened)}


# --------------------------------------------------------------------------------------------
# export

def _verify_case(name, model, traced, inputs, dtype, valid_mask, warn_lines):
    with torch.no_grad():
        eager = _logits_of(model(*inputs))
        try:
            got = _logits_of(traced(*inputs))
        except Exception as e:
            raise ExportVerificationError(
                f"export check failed on case '{name}' (input shape {list(inputs[0].shape)}): the traced "
                f"model raised {_error_with_type(e)}\n"
                "The trace most likely baked a sequence length or batch size into the graph."
                + _warn_text(warn_lines)) from e
    if valid_mask is not None:
        sel = valid_mask.bool()
        eager, got = eager[sel], got[sel]
    if got.shape != eager.shape:
        raise ExportVerificationError(
            f"export check failed on case '{name}': traced logits have shape {list(got.shape)}, eager "
            f"{list(eager.shape)}" + _warn_text(warn_lines))
    if torch.isnan(eager.float()).any():
        raise ExportVerificationError(f"export check failed on case '{name}': the eager model itself gives NaN "
                                      "logits on real (unpadded) positions")
    diff = _max_diff(eager, got)
    tol = _tol(dtype, eager)
    if not diff <= tol:  # also catches NaN
        raise ExportVerificationError(
            f"export check failed on case '{name}' (input shape {list(inputs[0].shape)}): traced vs eager "
            f"logits max abs diff {diff:.6g} > tolerance {tol:.3g}. The trace most likely baked a sequence "
            "length, batch size or padding pattern into the graph (Python arithmetic on shapes, int() of a "
            "tensor, data-dependent control flow)." + _warn_text(warn_lines))
    return diff


def _warn_text(lines):
    if not lines:
        return ""
    shown = "\n  ".join(lines[:12])
    more = f"\n  ... and {len(lines) - 12} more" if len(lines) > 12 else ""
    return "\nTracer warnings (likely culprits):\n  " + shown + more


def _test_ids(base: List[int], n: int, vocab: int, salt: int) -> List[int]:
    out = list(base[:n])
    k = 0
    while len(out) < n:
        out.append((base[k % len(base)] * 31 + 17 * (k + 1) + salt) % vocab if base else (k * 37 + salt) % vocab)
        k += 1
    return out


def _config_dict(model, config) -> Optional[dict]:
    cfg = config
    if cfg is None:
        cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        if hasattr(cfg, "to_dict"):
            cfg = cfg.to_dict()
        elif hasattr(cfg, "__dict__"):
            cfg = dict(vars(cfg))
        else:
            raise ExportError(f"config of type {type(cfg).__name__} is not a dict")
    return json.loads(json.dumps(cfg, default=str))


def _attach_structs(rec: Recorder, model, traced_sites: set):
    modules = []
    for path, mod in model.named_modules():
        if path in rec.first_inputs:
            inputs = [describe(a, f"{path}:input:{i}") for i, a in enumerate(rec.first_inputs[path])]
        else:
            inputs = []
        output = describe(rec.first_output[path], f"{path}:output") if path in rec.first_output else None
        for s in inputs + ([output] if output else []):
            _mark_pruned(s, traced_sites)
        modules.append({"path": path, "type": type(mod).__name__, "inputs": inputs, "output": output,
                        "calls": rec.calls.get(path, 0)})
    return modules


def _mark_pruned(struct, traced_sites):
    if struct["kind"] == "tensor":
        struct["pruned"] = struct["site"] not in traced_sites
    elif struct["kind"] == "tuple":
        for s in struct["items"]:
            _mark_pruned(s, traced_sites)


def _install_forward_shim(model):
    """HF models whose forward does not start with (input_ids, attention_mask, position_ids) (GPT-2's
    takes past_key_values second) get an instance-level forward taking exactly those, so that the
    model itself is traced and its submodule paths stay the eager ones."""
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return False
    if params[:3] == _ARG_NAMES or not all(n in params for n in _ARG_NAMES):
        return False
    orig = model.forward

    def forward(input_ids, attention_mask, position_ids):
        return orig(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    model.forward = forward
    return True


def export_model(model: torch.nn.Module, outdir: str, tokenizer=None, example_text: str = DEFAULT_EXAMPLE_TEXT,
                 dtype=None, architecture: Optional[str] = None, config=None,
                 special_tokens: Optional[Dict[str, Optional[int]]] = None,
                 example_ids: Optional[Sequence[int]] = None, cache: bool = True) -> dict:
    """Trace ``model`` with hook sites on every module and write ``outdir`` (model.pt, tokenizer.json,
    torchsight.json). Returns the manifest. Raises ExportVerificationError when the traced module
    does not reproduce the eager model at two other sequence lengths and on a left-padded batch.
    With ``cache`` (the default) and a model that supports a key/value cache (``cache_shape()`` and
    ``past_k``/``past_v`` arguments), also writes ``step.pt`` for fast generation (see export_step).
    A transformers model is exported through its family's adapter (torchsight_export.hf): its own
    forward with trace-friendly masks, always with step.pt; an architecture without one is refused."""
    ensure_hook_op()
    os.makedirs(outdir, exist_ok=True)
    tdtype = _dtype_of(dtype)

    encode, tok_specials, tok_data = _prepare_tokenizer(tokenizer, outdir)
    if example_ids is None:
        if encode is None:
            raise ExportError("export_model needs a tokenizer (tokenizer.json path or HF tokenizer) or example_ids")
        example_ids = encode(example_text)
    example_ids = [int(i) for i in example_ids]
    if len(example_ids) < 2:
        raise ExportError("the example text must give at least 2 tokens")

    adapter = None
    if is_transformers_model(model):
        try:
            adapter = HFAdapter(model)
        except UnsupportedArchitecture as e:
            raise ExportError(str(e)) from e
    cfg = _config_dict(model, config)
    specials = _special_tokens(special_tokens, tok_specials, cfg, tok_data)

    was_training = model.training
    first = next(iter(model.parameters()), None)
    orig_device = first.device if first is not None else torch.device("cpu")
    orig_dtype = first.dtype if first is not None else torch.float32
    moved = first is not None and (orig_device.type != "cpu" or orig_dtype != tdtype)
    shim = False
    hf_cfg = getattr(model, "config", None)
    cfg_restore = {}
    handles = []
    try:
        model.eval()
        if moved:
            model.to(device="cpu", dtype=tdtype)
        if adapter is not None:  # model.pt's root: (input_ids, attention_mask, position_ids) -> (logits,)
            model.forward = adapter.forward
            shim = True
        else:
            shim = _install_forward_shim(model)
        rec = Recorder()
        handles = mark(model, rec)

        ids = torch.tensor([example_ids], dtype=torch.long)
        mask = torch.ones_like(ids)
        pos = torch.arange(ids.shape[1], dtype=torch.long)[None, :]
        with torch.no_grad():
            out = model(ids, mask, pos)
            if not isinstance(out, (tuple, torch.Tensor)) and hf_cfg is not None and hasattr(hf_cfg, "return_dict"):
                for k, v in (("return_dict", False), ("torchscript", True)):
                    if hasattr(hf_cfg, k):
                        cfg_restore[k] = getattr(hf_cfg, k)
                        setattr(hf_cfg, k, v)
                out = model(ids, mask, pos)
            if not isinstance(out, tuple):
                raise ExportError(f"model forward must return a tuple whose element 0 is the logits; got "
                                  f"{type(out).__name__} (for Hugging Face models set config.torchscript=True)")
            logits = _logits_of(out)
            if logits.dim() != 3 or list(logits.shape[:2]) != list(ids.shape):
                raise ExportError(f"output 0 must be logits [batch, seq, vocab]; got shape {list(logits.shape)}")
            # the recorded forward: structures, call counts, sites in firing order
            rec.recording = True
            try:
                out = model(ids, mask, pos)
            finally:
                rec.recording = False
            vocab = int(_logits_of(out).shape[-1])

            with warnings.catch_warnings(record=True) as wrec:
                warnings.simplefilter("always")
                try:
                    with traceable_masks(model) if adapter is not None else contextlib.nullcontext():
                        traced = torch.jit.trace(model, (ids, mask, pos), check_trace=False, strict=False)
                except Exception as e:
                    raise ExportError(f"torch.jit.trace failed: {_error_with_type(e)} (the root forward must "
                                      "return a tuple of tensors, logits first)") from e
            warn_lines = _describe_warnings([w for w in wrec if issubclass(w.category, torch.jit.TracerWarning)])

        eager_sites = set(rec.fired)
        tsites = graph_sites(traced)
        unknown = sorted(set(tsites) - eager_sites)
        if unknown:
            raise ExportVerificationError(f"traced graph has hook sites not seen in the eager forward: {unknown[:10]}")

        # checks: two other lengths, and a left-padded batch of two prompts of different lengths
        L = len(example_ids)
        len_a = L + 5
        len_b = L - 3 if L >= 5 else L + 2
        _verify_case(f"length {len_a}", model, traced, padded_batch([_test_ids(example_ids, len_a, vocab, 1)]),
                     tdtype, None, warn_lines)
        _verify_case(f"length {len_b}", model, traced, padded_batch([_test_ids(example_ids, len_b, vocab, 2)]),
                     tdtype, None, warn_lines)
        pad_id = specials["pad"] if specials["pad"] is not None else 0
        long_p = _test_ids(example_ids, L + 3, vocab, 3)
        short_p = _test_ids(list(reversed(example_ids)), max(1, L - 2), vocab, 4)
        batch = padded_batch([short_p, long_p], pad_id)
        _verify_case(f"left-padded batch of 2 (lengths {len(short_p)} and {len(long_p)})", model, traced, batch,
                     tdtype, batch[1], warn_lines)

        traced_set = set(tsites)
        modules = _attach_structs(rec, model, traced_set)
        named = dict(model.named_modules())
        for entry in modules:
            entry["apply"] = _decide_apply(entry["path"], named[entry["path"]], traced, rec, tdtype)

        manifest = {
            "format": "torchsight-model",
            "version": 1,
            "architecture": architecture or type(model).__name__,
            "dtype": _dtype_name(tdtype),
            "vocabSize": vocab,
            "specialTokens": specials,
            "paddingSide": "left",
            "outputNames": ["logits"],
            "config": cfg,
            "exportedWith": {"torch": torch.__version__, "torchsight": VERSION},
            "modules": modules,
            "sites": list(rec.fired),
        }
        traced.save(os.path.join(outdir, "model.pt"))
        step_file = os.path.join(outdir, "step.pt")
        if os.path.exists(step_file):
            os.remove(step_file)
        if cache and (adapter is not None or hasattr(model, "cache_shape")):
            manifest["step"] = export_step(model, outdir, example_ids, tdtype, pad_id, adapter=adapter)
        with open(os.path.join(outdir, "torchsight.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
        from .dts import write_dts  # the module tree as TypeScript types: LanguageModel.load<Arch>(dir)
        write_dts(manifest, os.path.join(outdir, "model.d.ts"))
        return manifest
    finally:
        for h in handles:
            h.remove()
        if shim:
            try:
                del model.forward
            except AttributeError:
                pass
        if hf_cfg is not None:
            for k, v in cfg_restore.items():
                setattr(hf_cfg, k, v)
        if moved:
            model.to(device=orig_device, dtype=orig_dtype)
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# key/value cache: step.pt

def export_step(model: torch.nn.Module, outdir: str, example_ids: Sequence[int], dtype=None,
                pad_id: int = 0, adapter: Optional[HFAdapter] = None) -> dict:
    """Export ``step.pt``: the same model traced as one key/value-cache step,
    ``forward(input_ids, attention_mask, position_ids, past_k, past_v) -> (logits, present_k, present_v)``
    with caches ``[layers, batch, kv_heads, past, head_dim]`` (past may be 0: the prefill). It carries
    the same hook sites as model.pt. Its parameters are stored as 1-element placeholders: the loader
    binds them to model.pt's tensors, so the weights exist once on disk and in memory.

    The model must accept ``past_k``/``past_v`` and have ``cache_shape() -> (layers, kv_heads, head_dim)``,
    or be a transformers model with its ``adapter`` (the step then runs transformers' own forward
    with a DynamicCache made from the tensors).
    Verified: the prefill against the eager model, and greedy decoding of a left-padded batch for
    several steps against eager full recomputation. Returns the manifest's ``step`` entry."""
    ensure_hook_op()
    tdtype = _dtype_of(dtype)
    layers, heads, head_dim = (adapter or model).cache_shape()
    if adapter is not None:
        def full(*a):
            return adapter.full(*a)
        step_context = lambda: adapter.installed("step")  # noqa: E731
    else:
        def full(*a):
            return _logits_of(model(*a))
        step_context = contextlib.nullcontext

    def empty(batch):
        return torch.zeros(layers, batch, heads, 0, head_dim, dtype=tdtype)

    ids = list(example_ids)
    split = max(1, len(ids) - 2)
    handles = []
    try:
        model.eval()
        rec = Recorder()
        handles = mark(model, rec)
        with torch.no_grad(), step_context():
            pre_ids, pre_mask, pre_pos = padded_batch([ids[:split]], pad_id)
            _, pk, pv = model(pre_ids, pre_mask, pre_pos, empty(1), empty(1))
            full_ids, full_mask, full_pos = padded_batch([ids], pad_id)
            step_inputs = (full_ids[:, split:], full_mask, full_pos[:, split:], pk, pv)
            traced = torch.jit.trace(model, step_inputs, check_trace=False, strict=False)
    finally:
        for h in handles:
            h.remove()

    def check(name, got, want):
        diff = _max_diff(want, got)
        # cached attention sums in another order than full recomputation: in 16-bit types the
        # rounding differs by a few ulps of the logits' scale
        tol = _tol(tdtype, want) * (1 if tdtype == torch.float32 else 3)
        if not diff <= tol:
            raise ExportVerificationError(f"step export check failed on case '{name}': cached step vs eager logits "
                                          f"max abs diff {diff:.6g} > tolerance {tol:.3g}")

    def verify(step_module):
        with torch.no_grad():
            prompts = [ids + ids[:3], ids[: max(1, len(ids) - 3)]]
            b_ids, b_mask, b_pos = padded_batch(prompts, pad_id)
            logits, k, v = step_module(b_ids, b_mask, b_pos, empty(2), empty(2))
            sel = b_mask.bool()
            check("prefill of a left-padded batch", logits[sel], full(b_ids, b_mask, b_pos)[sel])
            nxt = logits[:, -1].argmax(-1)
            cur_ids, cur_mask = b_ids, b_mask
            for step in range(4):
                cur_ids = torch.cat([cur_ids, nxt[:, None]], 1)
                cur_mask = torch.cat([cur_mask, torch.ones_like(cur_mask[:, :1])], 1)
                pos = (cur_mask.cumsum(-1) - 1).clamp(min=0)
                want = full(cur_ids, cur_mask, pos)[:, -1]
                logits, k, v = step_module(nxt[:, None], cur_mask, pos[:, -1:], k, v)
                check(f"decode step {step + 1} with the cache", logits[:, -1], want)
                nxt = want.argmax(-1)

    verify(traced)
    # weights: 1-element placeholders (expanded views) that the loader rebinds to model.pt's tensors
    real = {}
    for path, sub in traced.named_modules():
        for name, p in list(sub.named_parameters(recurse=False)):
            real[(path, name)] = p
            setattr(sub, name, torch.nn.Parameter(torch.zeros(1, dtype=p.dtype).expand(p.shape), requires_grad=False))
    path = os.path.join(outdir, "step.pt")
    traced.save(path)
    # the saved file, rebound the way the loader does it, must still decode correctly
    loaded = torch.jit.load(path)
    subs = dict(loaded.named_modules())
    for (mpath, name), p in real.items():
        setattr(subs[mpath], name, p)
    verify(loaded)
    return {"file": "step.pt", "cache": {"layers": layers, "kvHeads": heads, "headDim": head_dim},
            "weights": "model.pt"}
