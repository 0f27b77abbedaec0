"""Python side of the benchmark (Debian's python3, torch 1.13).

    python3 bench/python_bench.py plain DIR            writes DIR/plain.pt: the same weights traced with no hook sites
    python3 bench/python_bench.py eager DIR JSON_ARGS  times eager PyTorch: plain forward, and forward hooks doing
                                                       the same intervention as torchsight's trace (12 block outputs
                                                       saved, one in-place patch); prints JSON medians in ms
    python3 bench/python_bench.py serve DIR JSON_ARGS  the same, one round per line read from stdin (the number of
                                                       iterations), so bench/run.ts can interleave Python's rounds
                                                       with its own; prints "ready", then one JSON line per round
"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from torchsight_testing.oracle import load_eager, batch_inputs  # noqa: E402


def plain(model_dir):
    model = load_eager(model_dir)
    ids = batch_inputs([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        traced = torch.jit.trace(model, ids, check_trace=False, strict=False)
    traced.save(os.path.join(model_dir, "plain.pt"))


def setup(model_dir, args):
    torch.set_num_threads(int(args["threads"]))
    model = load_eager(model_dir)
    inputs = batch_inputs([args["ids"]])
    blocks = model.transformer.h
    patch = torch.tensor(args["patch"], dtype=torch.float32)
    saved = []

    def save(mod, inp, out):
        saved.append(out[0])

    def add(mod, inp, out):
        out[0][:, -1].add_(patch)

    def timeit(iters):
        times = []
        with torch.inference_mode():
            for _ in range(iters):
                saved.clear()
                t0 = time.perf_counter()
                model(*inputs)
                times.append((time.perf_counter() - t0) * 1e3)
        return times

    def one_round(iters):
        plain_t = timeit(iters)
        handles = [b.register_forward_hook(save) for b in blocks] + [blocks[6].register_forward_hook(add)]
        hooked_t = timeit(iters)
        assert len(saved) == len(blocks)
        for h in handles:
            h.remove()
        return plain_t, hooked_t

    timeit(3)  # warm-up
    return one_round


def eager(model_dir, args):
    one_round = setup(model_dir, args)
    plain_t, hooked_t = [], []
    for _ in range(int(args["rounds"])):
        p, h = one_round(int(args["iters"]))
        plain_t += p
        hooked_t += h
    print(json.dumps({"plain_ms": statistics.median(plain_t), "hooked_ms": statistics.median(hooked_t),
                      "threads": torch.get_num_threads()}))


def serve(model_dir, args):
    one_round = setup(model_dir, args)
    print("ready", flush=True)
    for line in sys.stdin:
        p, h = one_round(int(line))
        print(json.dumps({"plain": p, "hooked": h, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "plain":
        plain(sys.argv[2])
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], json.loads(sys.argv[3]))
    else:
        eager(sys.argv[2], json.loads(sys.argv[3]))
