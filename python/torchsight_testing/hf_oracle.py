"""Ground truth for the Hugging Face family tests: the model as transformers itself loads and runs
it (eager attention, its own masks and cache), never the export.

    echo '{"model": DIR, "code": "result = model(**batch(...)).logits"}' | python -m torchsight_testing.hf_oracle

In scope: ``model`` (AutoModelForCausalLM.from_pretrained(DIR), eval), ``tokenizer``
(AutoTokenizer), ``torch``, ``batch_inputs(prompts)`` (left-padded ``(input_ids,
attention_mask, position_ids)`` with the tokenizer's pad id) and ``get_module(path)``; the code
runs under ``torch.no_grad()`` and sets ``result``. Output as torchsight_testing.oracle prints it.
"""
from __future__ import annotations

import json
import sys
import traceback

import torch

from torchsight_export.export import padded_batch

from .oracle import to_jsonable


def run_request(req: dict):
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(req["model"], attn_implementation="eager").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(req["model"])
    modules = dict(model.named_modules())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def batch_inputs(prompts):
        return padded_batch([list(p) for p in prompts], pad)

    def get_module(path: str):
        if path not in modules:
            raise KeyError(f"no module {path!r}")
        return modules[path]

    scope = {"model": model, "tokenizer": tokenizer, "torch": torch, "batch_inputs": batch_inputs,
             "get_module": get_module, "pad_id": pad, "result": None}
    with torch.no_grad():
        exec(compile(req["code"], "<hf oracle request>", "exec"), scope)
    return scope.get("result")


def main() -> int:
    try:
        out = to_jsonable(run_request(json.loads(sys.stdin.read())))
    except Exception:
        sys.stdout.write(json.dumps({"error": traceback.format_exc()}) + "\n")
        return 1
    sys.stdout.write(json.dumps(out, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
