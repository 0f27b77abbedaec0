"""Ground truth for tests: the eager example model (never model.pt / TorchScript).

    echo '{"model": DIR, "code": "result = model(*batch_inputs([[1,2,3]]))[0]"}' | python3 -m torchsight_testing.oracle

The code runs with ``model``, ``torch``, ``batch_inputs``, ``get_module(path)``, ``tokenizer``
(the built-in BPE encoder on DIR/tokenizer.json, when readable) and ``manifest`` in scope, under
``torch.no_grad()``; it sets ``result`` (nested dicts/lists of tensors and numbers). Tensors print
as ``{"shape": [...], "data": [flat floats]}``; non-finite floats as "NaN", "Infinity", "-Infinity".
On error: ``{"error": "..."}`` and exit status 1.
"""
from __future__ import annotations

import json
import math
import os
import sys
import traceback
from typing import List, Optional, Sequence

import torch

from . import examples
from torchsight_export.export import padded_batch

_DEFAULT_PAD: Optional[int] = None


def _read_json(path):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def load_eager(model_dir: str) -> torch.nn.Module:
    """Rebuild the example model named by ``eager_model.json`` and load ``eager_state.pt``; eval mode."""
    global _DEFAULT_PAD
    info = _read_json(os.path.join(model_dir, "eager_model.json"))
    cfg = info["config"]
    model = examples.build_model(info["arch"], cfg, int(info.get("seed", 0)))
    state = torch.load(os.path.join(model_dir, "eager_state.pt"), map_location="cpu")
    model.load_state_dict(state)
    model.eval()
    pad = None
    mpath = os.path.join(model_dir, "torchsight.json")
    if os.path.isfile(mpath):
        pad = _read_json(mpath).get("specialTokens", {}).get("pad")
    if pad is None:
        pad = cfg.get("pad_token_id")
    _DEFAULT_PAD = int(pad) if pad is not None else 0
    return model


def batch_inputs(prompts: Sequence[Sequence[int]], pad_id: Optional[int] = None):
    """Left-pad id lists: ``(input_ids, attention_mask, position_ids)``, int64 ``[batch, seq]``, with
    ``position_ids = cumsum(mask) - 1`` clamped at 0. The pad id defaults to the loaded model's."""
    if prompts and isinstance(prompts[0], int):
        prompts = [prompts]
    pad = pad_id if pad_id is not None else (_DEFAULT_PAD if _DEFAULT_PAD is not None else 0)
    return padded_batch([list(p) for p in prompts], pad)


def _num(x: float):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def to_jsonable(v):
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu()
        data = t.reshape(-1).double().tolist() if t.numel() else []
        return {"shape": list(t.shape), "data": [_num(x) for x in data]}
    if isinstance(v, dict):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, torch.Size):
        return list(v)
    raise TypeError(f"result holds a {type(v).__name__}, which cannot be printed as JSON")


def run_request(req: dict):
    model_dir = req["model"]
    model = load_eager(model_dir)
    modules = dict(model.named_modules())

    def get_module(path: str) -> torch.nn.Module:
        if path not in modules:
            raise KeyError(f"no module {path!r}")
        return modules[path]

    tokenizer = None
    tok_path = os.path.join(model_dir, "tokenizer.json")
    if os.path.isfile(tok_path):
        try:
            from torchsight_export.bpe import BPETokenizer
            tokenizer = BPETokenizer.from_file(tok_path)
        except Exception:
            tokenizer = None
    manifest = None
    if os.path.isfile(os.path.join(model_dir, "torchsight.json")):
        manifest = _read_json(os.path.join(model_dir, "torchsight.json"))
    scope = {"model": model, "torch": torch, "batch_inputs": batch_inputs, "get_module": get_module,
             "tokenizer": tokenizer, "manifest": manifest, "result": None}
    with torch.no_grad():
        exec(compile(req["code"], "<oracle request>", "exec"), scope)
    return scope.get("result")


def main(argv=None) -> int:
    try:
        req = json.loads(sys.stdin.read())
        out = to_jsonable(run_request(req))
    except Exception:
        sys.stdout.write(json.dumps({"error": traceback.format_exc()}) + "\n")
        return 1
    sys.stdout.write(json.dumps(out, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
