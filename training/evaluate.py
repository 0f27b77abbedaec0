"""Measure the phenomena the tutorials show, in eager PyTorch on the trained weights: facts, patching,
in-context antonyms and a function vector, steering, the logit lens. The protocols (prompts, word
splits) are probes.py's, the same the tests and examples use through torchsight.

    python -m training.evaluate [--weights training/tiny-facts] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List

import torch

from . import probes as P
from .model import load_trained


class Runner:
    def __init__(self, weights: str):
        from .probes import load_tokenizer
        self.model = load_trained(weights)
        self.tok = load_tokenizer(weights)
        self.blocks = self.model.transformer.h

    def ids(self, text: str) -> List[int]:
        return self.tok(text)

    def run(self, ids: List[int], hooks=()):
        handles = [self.blocks[layer].register_forward_hook(fn) for layer, fn in hooks]
        try:
            x = torch.tensor([ids])
            return self.model(x, torch.ones_like(x), torch.arange(len(ids))[None])[0][0]
        finally:
            for h in handles:
                h.remove()

    def hidden(self, ids: List[int]) -> List[torch.Tensor]:
        store: List[torch.Tensor] = []
        hooks = [(i, lambda m, inp, out: store.append(out[0][0].clone())) for i in range(len(self.blocks))]
        self.run(ids, hooks)
        return store  # per layer [seq, d]

    def top(self, logits: torch.Tensor) -> str:
        return self.decode(int(logits[-1].argmax()))

    def decode(self, i: int) -> str:
        return self.tok.decode(i)


@torch.no_grad()
def evaluate(weights: str) -> dict:
    r = Runner(weights)
    n_layer = len(r.blocks)
    out: dict = {}

    # 1. facts
    facts = []
    for landmark, city in P.LANDMARKS:
        logits = r.run(r.ids(P.fact_prompt(landmark)))
        p = logits[-1].softmax(-1)
        facts.append({"landmark": landmark, "top": r.top(logits), "city": city, "p": float(p[r.ids(" " + city)[0]])})
    out["facts"] = sum(f["top"] == " " + f["city"] for f in facts)

    # 2. patching the last position, layer by layer: which layers flip corrupted -> clean city
    flips = []
    for clean, corrupt in P.PATCH_PAIRS:
        cl, co = r.ids(P.fact_prompt(clean)), r.ids(P.fact_prompt(corrupt))
        acts = r.hidden(cl)
        row = []
        for layer in range(n_layer):
            def patch(m, inp, o, a=acts[layer]):
                o[0][0, -1] = a[-1]
            row.append(r.top(r.run(co, [(layer, patch)])).strip())
        flips.append(row)
    out["patching"] = flips

    # 3. in-context antonyms and the function vector
    def accuracy(prompts, words, hooks_for=None):
        ok = 0
        for text, w in zip(prompts, words):
            ids = r.ids(text)
            ok += r.top(r.run(ids, hooks_for(len(ids)) if hooks_for else ())) == P.ANTONYM[w]
        return ok / len(words)

    ev = P.EVAL_WORDS
    out["antonym5"] = accuracy([P.icl_prompt(i) for i in range(len(ev))], ev)
    out["antonym0"] = accuracy([P.zero_shot(w) for w in ev], ev)
    out["copy0"] = sum(r.top(r.run(r.ids(P.zero_shot(w)))) == w for w in ev) / len(ev)
    build = [r.hidden(r.ids(t)) for t in P.fv_build_prompts()]
    fv = []
    for layer in range(n_layer):
        vec = torch.stack([h[layer][-1] for h in build]).mean(0)

        def add(m, inp, o, v=vec):
            o[0][0, -1] += v
        fv.append(accuracy([P.zero_shot(w) for w in ev], ev, lambda n, layer=layer, add=add: [(layer, add)]))
    out["fv_by_layer"] = fv

    # 4. steering: the difference of mean activations, added at every position
    steer = {}
    for layer in range(n_layer):
        def mean_act(texts):
            return torch.stack([r.hidden(r.ids(t))[layer].mean(0) for t in texts]).mean(0)
        diff = mean_act(P.STEER_POSITIVE) - mean_act(P.STEER_NEGATIVE)
        row = {}
        for scale in P.STEER_SCALES:
            words = []
            for sign in (1, -1):
                def add(m, inp, o, v=diff * scale * sign):
                    o[0][0] += v
                words.append(r.top(r.run(r.ids(P.STEER_PROMPT), [(layer, add)])).strip())
            row[scale] = words
        steer[layer] = row
    out["steering"] = steer

    # 5. logit lens: P(city) per layer
    lens = []
    for landmark, city in P.LANDMARKS:
        hs = r.hidden(r.ids(P.fact_prompt(landmark)))
        cid = r.ids(" " + city)[0]
        lens.append([float(r.model.lm_head(r.model.transformer.ln_f(h[-1])).softmax(-1)[cid]) for h in hs])
    out["lens"] = lens
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Measure the tutorials' phenomena on the trained model.")
    p.add_argument("--weights", default="training/tiny-facts")
    p.add_argument("--json")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    res = evaluate(a.weights)
    print(f"facts top-1: {res['facts']}/{len(P.LANDMARKS)}")
    for (clean, corrupt), row in zip(P.PATCH_PAIRS, res["patching"]):
        print(f"patch {clean} -> {corrupt}: {row}")
    print(f"antonyms 5-shot {res['antonym5']:.2f}, zero-shot {res['antonym0']:.2f} (copy {res['copy0']:.2f})")
    print("function vector by layer: " + " ".join(f"{x:.2f}" for x in res["fv_by_layer"]))
    for layer, row in res["steering"].items():
        print(f"steer layer {layer}: " + "  ".join(f"{s}: +{w[0]} -{w[1]}" for s, w in row.items()))
    for (landmark, city), row in zip(P.LANDMARKS, res["lens"]):
        print(f"lens {city:>10}: " + " ".join(f"{x:.2f}" for x in row))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
