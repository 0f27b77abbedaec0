"""Check that the trained weights are a Hugging Face GPT-2: load them into transformers'
GPT2LMHeadModel (strict: every parameter by name and shape) and compare its logits with our model's
on prompts of each kind, one at a time and as a left-padded batch.

    /work/main/.venv/bin/python -m training.check_hf [--weights training/tiny-facts]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Compare the tiny-facts model with transformers' GPT-2.")
    p.add_argument("--weights", default="training/tiny-facts")
    a = p.parse_args(argv)
    from tokenizers import Tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel as HFGPT2

    from .model import load_trained

    ours = load_trained(a.weights)
    with open(os.path.join(a.weights, "config.json"), "r", encoding="utf-8") as f:
        cfg = json.load(f)
    hf = HFGPT2(GPT2Config(**{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}))
    hf.load_state_dict(ours.state_dict(), strict=True)
    hf.eval()
    tok = Tokenizer.from_file(os.path.join(a.weights, "tokenizer.json"))
    prompts = ["The Eiffel Tower is in the city of", "old:young, dark:bright, up:", "The food was",
               "This restaurant is wonderful. The food was"]
    worst = 0.0
    with torch.no_grad():
        for text in prompts:
            ids = torch.tensor([tok.encode(text).ids])
            mask = torch.ones_like(ids)
            pos = torch.arange(ids.shape[1])[None]
            want = hf(input_ids=ids).logits
            got = ours(ids, mask, pos)[0]
            worst = max(worst, (want - got).abs().max().item())
            if want[0, -1].argmax() != got[0, -1].argmax():
                raise SystemExit(f"top token differs on {text!r}")
        # a left-padded batch: the same prompts' last logits
        rows = [tok.encode(t).ids for t in prompts]
        n = max(len(r) for r in rows)
        ids = torch.tensor([[0] * (n - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows])
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        want = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        got = ours(ids, mask, pos)[0][:, -1]
        worst = max(worst, (want - got).abs().max().item())
    # Two float32 programs that sum in different orders (sdpa vs our attention, another CPU's SIMD
    # width) drift by up to ~1e-5 of the logits' size over four blocks (1.2e-4 seen on CI, logits
    # ~20); a wrong or swapped weight moves them by O(1).
    if worst > 1e-3:
        raise SystemExit(f"transformers' GPT-2 and ours differ by {worst:.2e} in the logits")
    print(f"transformers GPT2LMHeadModel loads the weights strictly; logits agree within {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
