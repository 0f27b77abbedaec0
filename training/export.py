"""Export the committed tiny-facts weights with torchsight's exporter (model.pt, step.pt, tokenizer.json,
torchsight.json), plus eager_state.pt and eager_model.json, from which the test oracle rebuilds the
same model in eager PyTorch.

    PYTHONPATH=python /usr/bin/python3 -m training.export [--weights training/tiny-facts] [--out models/tiny-facts]

Run it with the torch the addon is built against (Debian's 1.13 by default): a TorchScript file
written by a newer torch may not load in an older libtorch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from torchsight_export.export import export_model

from .model import load_trained

EXAMPLE_TEXT = "The Eiffel Tower is in the city of"


def export(weights_dir: str, out: str) -> dict:
    model = load_trained(weights_dir)
    cfg = model.config
    os.makedirs(out, exist_ok=True)
    eos = cfg["eos_token_id"]
    manifest = export_model(model, out, tokenizer=os.path.join(weights_dir, "tokenizer.json"),
                            example_text=EXAMPLE_TEXT, architecture="GPT2LMHeadModel", config=cfg,
                            special_tokens={"bos": eos, "eos": eos, "pad": eos})
    # for the oracle (torchsight_testing.oracle): the example GPT-2 class has the same names and math
    torch.save(model.state_dict(), os.path.join(out, "eager_state.pt"))
    with open(os.path.join(out, "eager_model.json"), "w", encoding="utf-8") as f:
        json.dump({"arch": "gpt2", "seed": 0, "config": cfg}, f, indent=1)
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Export the trained tiny-facts model for torchsight.")
    p.add_argument("--weights", default="training/tiny-facts")
    p.add_argument("--out", default="models/tiny-facts")
    a = p.parse_args(argv)
    t0 = time.time()
    export(a.weights, a.out)
    print(f"{a.out} {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
