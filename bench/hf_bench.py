"""What users would pick instead of torchsight, timed on the same weights (.venv: torch 2.x,
transformers, nnsight from python/requirements-bench.txt).

    python bench/hf_bench.py make OUT --shape tiny|124m   a seeded GPT2LMHeadModel and a trained
                                                          tokenizer, saved with save_pretrained
    python bench/hf_bench.py serve SRC JSON_ARGS          loads SRC with transformers and wraps it
                                                          in nnsight; prints "ready", then answers
                                                          one JSON line per request line on stdin:
        check                 greedy generate's tokens and the 12 values nnsight's trace saves
        {"iters": n, "gen": g} times (ms) of n forwards, n nnsight traces, g generates, g prefills
                              (the prompt's forward) and n floor steps (one token's weight matmuls)
JSON_ARGS: threads, ids (the trace's tokens), patch (added in place at block 6's last position),
prompt and new_tokens (greedy generation). bench/lib/hf.ts interleaves these rounds with ours.
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

SHAPES = {
    # the shapes of bench/run.ts's example models: 12 layers of d=64 (vocab 512), and GPT-2 small
    "tiny": dict(n_layer=12, n_embd=64, n_head=4, n_positions=256, vocab_size=512, tokenizer_vocab=512),
    "124m": dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257, tokenizer_vocab=1000),
}
SPECIAL = "<|endoftext|>"


def make(out, shape):
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from torchsight_testing.examples import build_corpus

    s = dict(SHAPES[shape])
    tok_vocab = s.pop("tokenizer_vocab")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=tok_vocab - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(build_corpus().splitlines(), trainer)
    tok.add_special_tokens([SPECIAL])
    eos = tok.token_to_id(SPECIAL)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL)
    cfg = transformers.GPT2Config(**s, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():
        # from_config's init (std 0.02) leaves logits so flat that greedy choices hang on rounding;
        # wider weights (scaled with the width) give clear winners, so both generates can agree
        gen = torch.Generator().manual_seed(1)
        std = 0.15 * (64 / s["n_embd"]) ** 0.5
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        # end of text (tied: its embedding row is the head's) scores 0, never the greedy choice
        # among ~vocab random logits, so every generation runs its full length
        model.transformer.wte.weight[eos] = 0
    model.save_pretrained(out)
    fast.save_pretrained(out)
    print(json.dumps({"shape": shape, "eos": eos, "tokenizer_vocab": tok.get_vocab_size()}))


def serve(src, args):
    import transformers
    from nnsight import LanguageModel

    torch.set_num_threads(int(args["threads"]))
    tok = transformers.AutoTokenizer.from_pretrained(src)
    # transformers' default attention (what a user gets); the export traced the eager kernel
    hf = transformers.AutoModelForCausalLM.from_pretrained(src).eval()
    nn = LanguageModel(hf, tokenizer=tok)
    ids = torch.tensor([args["ids"]])
    mask = torch.ones_like(ids)
    patch = torch.tensor(args["patch"], dtype=torch.float32)
    prompt = torch.tensor([args["prompt"]])
    new_tokens = int(args["new_tokens"])
    layers = len(hf.transformer.h)

    def trace():
        saved = []
        with nn.trace({"input_ids": ids, "attention_mask": mask}):
            # in module order: nnsight runs the block beside the forward and waits at each site
            for i in range(layers):
                out = nn.transformer.h[i].output
                if i == 6:
                    out[:, -1].add_(patch)
                saved.append(out.save())
        return saved

    def forward():
        return hf(input_ids=ids, attention_mask=mask).logits

    def generate():
        # eos_token_id=None: no stop (ours runs with stop: [] and eos never wins, see make())
        return hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id)

    # the floor under any runtime's cached step on these kernels: one token's weight matmuls
    # (every Conv1D's addmm and the tied head), nothing else; with the prefill it bounds the
    # generate ratio from below (on a memory-bound CPU it is most of transformers' own step)
    convs = [c for blk in hf.transformer.h for c in (blk.attn.c_attn, blk.attn.c_proj, blk.mlp.c_fc, blk.mlp.c_proj)]
    rows = {c.weight.shape[0]: torch.randn(1, c.weight.shape[0]) for c in convs}
    wte = hf.transformer.wte.weight

    def floor_step():
        for c in convs:
            torch.addmm(c.bias, rows[c.weight.shape[0]], c.weight)
        return torch.nn.functional.linear(rows[wte.shape[1]], wte)

    def prefill():
        return hf(input_ids=prompt, attention_mask=torch.ones_like(prompt)).logits

    def timed(fn, n):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return times

    with torch.inference_mode():
        for _ in range(3):  # warm-up
            forward()
            trace()
        generate()
        print("ready", flush=True)
        for line in sys.stdin:
            line = line.strip()
            if line == "check":
                saved = trace()
                gen = generate()[0, prompt.shape[1]:].tolist()
                print(json.dumps({"generate": gen, "saved": [s.flatten().tolist() for s in saved],
                                  "shape": list(saved[0].shape), "threads": torch.get_num_threads(),
                                  "attn_implementation": hf.config._attn_implementation,
                                  "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                               "nnsight": _version("nnsight")}}), flush=True)
                continue
            req = json.loads(line)
            n, g = int(req["iters"]), int(req["gen"])
            print(json.dumps({"forward": timed(forward, n), "nnsight": timed(trace, n), "generate": timed(generate, g),
                              "prefill": timed(prefill, g), "floor_step": timed(floor_step, n)}), flush=True)


def _version(pkg):
    from importlib.metadata import version
    return version(pkg)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[sys.argv.index("--shape") + 1])
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], json.loads(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
