"""Train tiny-facts: a byte-level BPE tokenizer and a small GPT-2 on the seeded corpus (corpus.py).

    /work/main/.venv/bin/python -m training.train --out training/tiny-facts [--steps N] [--seed 0]

Writes OUT/tokenizer.json, OUT/config.json, OUT/weights.pt (plain tensors, loadable by torch 1.13),
OUT/train-log.json (loss and probe accuracies by step). Needs torch >= 2.0 and `tokenizers`.
Reproducible: the corpus, the initialisation and the batch order come from --seed; the floats can
still differ across CPUs and torch builds (reductions in other orders), see training/README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from typing import List

import torch
import torch.nn.functional as F

from . import corpus as C
from .model import GPT2LMHeadModel, make_config

EOS = "<|endoftext|>"


# --------------------------------------------------------------------------------------------
# tokenizer

def train_tokenizer(seed: int, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(C.tokenizer_text(seed).split("\n"), trainer)
    bad = [w for w in C.required_words() if len(tok.encode(w).ids) != 1]
    if bad:
        raise RuntimeError(f"these words are not single tokens: {bad}")
    return tok


# --------------------------------------------------------------------------------------------
# batches: rows of whole lines joined by newlines, from position 0 (as a prompt is); some rows
# start mid-review, so that "The food was" on its own is in distribution

def make_row(rng: random.Random, tok, length: int) -> List[int]:
    pieces = []
    if rng.random() < 0.1:
        review = C.review_line(rng)
        cuts = [i + 2 for i in range(len(review)) if review.startswith(". ", i)]
        pieces.append(review[rng.choice(cuts):] if cuts else review)
    while sum(len(p) for p in pieces) < length * 6:  # characters; more than enough tokens
        pieces.append(C.line(rng))
    ids = tok.encode("\n".join(pieces)).ids
    if len(ids) < length + 1:
        raise RuntimeError("row too short; raise the character budget")
    return ids[:length + 1]


def batch(seed: int, step: int, tok, rows: int, length: int) -> torch.Tensor:
    rng = random.Random(seed * 1_000_003 + step)
    return torch.tensor([make_row(rng, tok, length) for _ in range(rows)], dtype=torch.long)


# --------------------------------------------------------------------------------------------
# probes, printed while training

@torch.no_grad()
def probe(model, tok, seed: int = 1234) -> dict:
    model.eval()
    rng = random.Random(seed)

    def top1(texts: List[str]) -> List[int]:
        out = []
        for t in texts:
            ids = torch.tensor([tok.encode(t).ids])
            out.append(int(model.train_logits(ids)[0, -1].argmax()))
        return out

    facts = top1([f"{l} is in the city of" for l, _ in C.LANDMARKS])
    facts_ok = sum(tok.decode([i]) == " " + c for i, (_, c) in zip(facts, C.LANDMARKS))
    res = {"facts": facts_ok}
    for shots in (0, 5):
        for task in ("antonym", "copy"):
            texts, want = [], []
            for _ in range(60):
                ws = rng.sample(C.WORDS, shots + 1)
                texts.append(C.task_prompt(task, ws[:-1], ws[-1]))
                want.append(C.TASKS[task](ws[-1]))
            got = top1(texts)
            res[f"{task}{shots}"] = sum(tok.decode([g]) == w for g, w in zip(got, want)) / len(want)
    model.train()
    return res


# --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Train the tiny-facts example model.")
    p.add_argument("--out", default="training/tiny-facts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=96, dest="d_model")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1, help="1 makes a run bit-reproducible on one machine")
    p.add_argument("--probe-every", type=int, default=250)
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    tok = train_tokenizer(a.seed, a.vocab)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    cfg = make_config(tok.get_vocab_size(), a.layers, a.d_model, a.heads, a.length, eos)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    torch.manual_seed(a.seed)
    model = GPT2LMHeadModel(cfg)
    model.train()
    decay = [p_ for n, p_ in model.named_parameters() if p_.dim() >= 2]
    no_decay = [p_ for n, p_ in model.named_parameters() if p_.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98))

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        frac = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    n_params = sum(p_.numel() for p_ in model.parameters())
    print(f"vocab {cfg['vocab_size']}, {n_params / 1e6:.2f}M parameters, {a.steps} steps of "
          f"{a.batch}x{a.length}", flush=True)
    log = {"args": vars(a), "params": n_params, "steps": [], "loss": [], "probes": []}
    t0 = time.time()
    smooth = None
    for step in range(a.steps):
        x = batch(a.seed, step, tok, a.batch, a.length)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits = model.train_logits(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none").mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        if step % 25 == 0 or step == a.steps - 1:
            if step % 100 == 0:
                print(f"step {step} loss {smooth:.4f} {time.time() - t0:.0f}s", flush=True)
            log["steps"].append(step)
            log["loss"].append(round(loss.item(), 5))
        if (step + 1) % a.probe_every == 0 or step == a.steps - 1:
            pr = probe(model, tok)
            pr["step"] = step + 1
            log["probes"].append(pr)
            print(f"step {step + 1} loss {smooth:.4f} {time.time() - t0:.0f}s {pr}", flush=True)
            state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
            torch.save(state, os.path.join(a.out, "weights.pt"))
            with open(os.path.join(a.out, "train-log.json"), "w") as f:
                json.dump(log, f)
    log["seconds"] = round(time.time() - t0)
    with open(os.path.join(a.out, "train-log.json"), "w") as f:
        json.dump(log, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
