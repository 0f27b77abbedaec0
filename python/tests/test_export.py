"""Tests for torchsight_export. Plain asserts; run with:  /usr/bin/python3 python/tests/test_export.py"""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYROOT = os.path.dirname(HERE)
sys.path.insert(0, PYROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torchsight_export  # noqa: E402
from torchsight_export import ExportVerificationError, export_model, graph_sites  # noqa: E402
from torchsight_testing import examples, oracle  # noqa: E402
from torchsight_export.bpe import BPETokenizer, pre_tokenize  # noqa: E402

MANIFEST_KEYS = {"format", "version", "architecture", "dtype", "vocabSize", "specialTokens", "paddingSide",
                 "outputNames", "config", "exportedWith", "modules", "sites"}
TMP = tempfile.mkdtemp(prefix="torchsight-export-test-")
DIRS = {}


def model_dir(arch):
    if arch not in DIRS:
        d = os.path.join(TMP, arch)
        examples.export_example(arch, d, seed=0)
        DIRS[arch] = d
    return DIRS[arch]


def load(arch):
    d = model_dir(arch)
    with open(os.path.join(d, "torchsight.json")) as f:
        manifest = json.load(f)
    traced = torch.jit.load(os.path.join(d, "model.pt"))
    eager = oracle.load_eager(d)
    return d, manifest, traced, eager


def tensor_structs(s):
    if s is None:
        return
    if s["kind"] == "tensor":
        yield s
    elif s["kind"] == "tuple":
        for i in s["items"]:
            yield from tensor_structs(i)


def traced_sub(traced, path):
    m = traced
    for p in path.split(".") if path else []:
        m = getattr(m, p)
    return m


# ------------------------------------------------------------------------------------------------

def test_manifest_keys_and_modules():
    for arch, cls in (("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")):
        d, m, traced, eager = load(arch)
        for f in ("model.pt", "tokenizer.json", "torchsight.json", "eager_state.pt", "eager_model.json"):
            assert os.path.isfile(os.path.join(d, f)), f
        assert set(m) - {"step"} == MANIFEST_KEYS, set(m) ^ MANIFEST_KEYS
        # the example models support a key/value cache: step.pt is exported beside model.pt
        assert m["step"]["file"] == "step.pt" and set(m["step"]["cache"]) == {"layers", "kvHeads", "headDim"}
        assert m["format"] == "torchsight-model" and m["version"] == 1
        assert m["architecture"] == cls
        assert m["dtype"] == "float32" and m["vocabSize"] == 512
        assert m["specialTokens"] == {"bos": 511, "eos": 511, "pad": 511}, m["specialTokens"]
        assert m["paddingSide"] == "left" and m["outputNames"] == ["logits"]
        assert m["config"]["vocab_size"] == 512
        assert m["exportedWith"]["torchsight"] == torchsight_export.__version__
        assert [e["path"] for e in m["modules"]] == [p for p, _ in eager.named_modules()]
        assert [e["type"] for e in m["modules"]] == [type(x).__name__ for _, x in eager.named_modules()]
        for e in m["modules"]:
            assert set(e) == {"path", "type", "inputs", "output", "calls", "apply"}, e.keys()
        root = m["modules"][0]
        assert root["path"] == "" and [s["site"] for s in root["inputs"]] == [":input:0", ":input:1", ":input:2"]
        assert root["output"]["kind"] == "tuple" and root["output"]["items"][0]["site"] == ":output:0"
        assert root["output"]["items"][0]["shape"][-1] == 512


def test_gpt2_structure():
    d, m, traced, eager = load("gpt2")
    mods = {e["path"]: e for e in m["modules"]}
    for p in ["transformer.wte", "transformer.wpe", "transformer.drop", "transformer.h.11.attn.c_attn",
              "transformer.h.0.attn.attn_dropout", "transformer.h.0.attn.resid_dropout", "transformer.h.0.mlp.act",
              "transformer.h.0.mlp.dropout", "transformer.ln_f", "lm_head"]:
        assert p in mods, p
    assert mods["transformer.h.0"]["type"] == "GPT2Block"
    assert mods["transformer.h.0.attn.c_attn"]["type"] == "Conv1D"
    assert mods["transformer.h.0.mlp.act"]["type"] == "NewGELUActivation"
    assert eager.lm_head.weight is eager.transformer.wte.weight
    attn_out = mods["transformer.h.0.attn"]["output"]
    assert attn_out["kind"] == "tuple" and attn_out["items"][1] == {"kind": "none"}
    assert attn_out["items"][0]["site"] == "transformer.h.0.attn:output:0"
    assert mods["transformer.h.0.mlp"]["output"]["site"] == "transformer.h.0.mlp:output"
    assert mods["transformer.h.0"]["output"]["items"][0]["site"] == "transformer.h.0:output:0"
    assert mods["transformer.h.0"]["inputs"][0]["shape"][:2] == [1, len(_example_ids(d))]


def _example_ids(d):
    return BPETokenizer.from_file(os.path.join(d, "tokenizer.json")).encode(examples.EXAMPLE_TEXT)


def test_sites_exist():
    for arch in ("gpt2", "llama"):
        d, m, traced, eager = load(arch)
        gsites = graph_sites(traced)
        assert gsites, "no hook sites in the traced graph"
        fired = m["sites"]
        assert set(gsites) <= set(fired)
        n_tensor = 0
        for e in m["modules"]:
            if e["calls"] == 0:
                assert e["type"] == "ModuleList", e["path"]
                continue
            assert e["calls"] == 1, e
            structs = [t for s in e["inputs"] + [e["output"]] for t in tensor_structs(s)]
            for t in structs:
                n_tensor += 1
                assert t["site"] in fired, t["site"]
                assert t["pruned"] == (t["site"] not in gsites), t
                assert t["dtype"] in ("float32", "int64"), t
        assert n_tensor == len(fired), (n_tensor, len(fired))  # each module ran once
        # every module that ran has its output site in the graph unless pruned
        pruned = [t["site"] for e in m["modules"] for s in e["inputs"] + ([e["output"]] if e["output"] else [])
                  for t in tensor_structs(s) if t["pruned"]]
        print(f"  {arch}: {len(fired)} sites, {len(set(gsites))} in graph, pruned: {pruned}")
        # firing order in the graph follows the eager order
        order = {s: i for i, s in enumerate(fired)}
        idx = [order[s] for s in gsites]
        assert idx == sorted(idx), "graph site order differs from eager firing order"


def test_apply_kinds():
    d, m, traced, eager = load("gpt2")
    mods = {e["path"]: e for e in m["modules"]}
    assert mods["lm_head"]["apply"] == {"kind": "linear"}
    assert mods["transformer.ln_f"]["apply"] == {"kind": "layer_norm", "eps": 1e-5}
    assert mods["transformer.wte"]["apply"] == {"kind": "embedding"}
    assert mods["transformer.h.0.attn.c_attn"]["apply"] == {"kind": "conv1d"}
    assert mods["transformer.h.0.mlp.act"]["apply"] == {"kind": "act", "fn": "gelu_new"}
    assert mods["transformer.drop"]["apply"] == {"kind": "identity"}
    assert mods["transformer.h.0"]["apply"] == {"kind": "method", "outputFlattened": True}
    assert mods["transformer.h.0.mlp"]["apply"] == {"kind": "method", "outputFlattened": False}
    d2, m2, traced2, eager2 = load("llama")
    mods2 = {e["path"]: e for e in m2["modules"]}
    assert mods2["model.norm"]["apply"] == {"kind": "rms_norm", "eps": 1e-6}
    assert mods2["model.layers.0.mlp.act_fn"]["apply"] == {"kind": "act", "fn": "silu"}
    assert mods2["lm_head"]["apply"] == {"kind": "linear"}
    assert mods2["model.layers.0"]["apply"]["kind"] == "method"
    for e in m["modules"] + m2["modules"]:
        a = e["apply"]
        assert a["kind"] in ("linear", "layer_norm", "embedding", "conv1d", "rms_norm", "act", "identity",
                             "method", "none"), a
        if a["kind"] == "none":
            assert a["reason"], e["path"]


def test_tied_lm_head_logit_lens():
    d, m, traced, eager = load("gpt2")
    # the traced lm_head holds the tied weight as an attribute
    w = traced_sub(traced, "lm_head").weight
    assert torch.equal(w, eager.transformer.wte.weight)
    ln = traced_sub(traced, "transformer.ln_f")
    ids, mask, pos = oracle.batch_inputs([_example_ids(d)])
    seen = {}
    hk = eager.transformer.h[5].register_forward_hook(lambda mod, i, o: seen.__setitem__("h", o[0]))
    hk2 = eager.transformer.ln_f.register_forward_hook(lambda mod, i, o: seen.__setitem__("lnf", o))
    with torch.no_grad():
        logits = eager(ids, mask, pos)[0]
        # final layer through the manifest's apply recipe with traced params == eager logits
        lens_final = F.linear(seen["lnf"], w)
        assert torch.allclose(lens_final, logits, atol=1e-5)
        h5 = seen["h"]
        lens = F.linear(F.layer_norm(h5, (64,), ln.weight, ln.bias, 1e-5), w)
        ref = eager.lm_head(eager.transformer.ln_f(h5))
    hk.remove()
    hk2.remove()
    assert torch.allclose(lens, ref, atol=1e-5)


def test_method_apply_runs_on_traced_block():
    d, m, traced, eager = load("gpt2")
    ids, mask, pos = oracle.batch_inputs([_example_ids(d)])
    seen = {}
    hk = eager.transformer.h[3].register_forward_hook(lambda mod, i, o: seen.__setitem__("io", (i, o)))
    with torch.no_grad():
        eager(ids, mask, pos)
    hk.remove()
    (h_in, mask4), out = seen["io"]
    blk = traced_sub(traced, "transformer.h.3")
    with torch.no_grad():
        got = blk._c._get_method("forward")(h_in, mask4)
    assert isinstance(got, torch.Tensor)  # outputFlattened: eager returns (h,)
    assert torch.allclose(got, out[0], atol=1e-5)


def test_traced_equals_eager_new_lengths_and_padding():
    for arch in ("gpt2", "llama"):
        d, m, traced, eager = load(arch)
        base = _example_ids(d)
        for n in (1, 3, 20, 45):
            ids = [(base[k % len(base)] + 13 * k) % 511 for k in range(n)]
            x = oracle.batch_inputs([ids])
            with torch.no_grad():
                a, b = eager(*x)[0], traced(*x)[0]
            assert a.shape == (1, n, 512)
            assert torch.allclose(a, b, atol=1e-5), (arch, n, (a - b).abs().max())
        prompts = [base[:4], base + [5, 6, 7], base[2:9]]
        x = oracle.batch_inputs(prompts)
        assert int(x[0][0, 0]) == 511 and int(x[1][0, 0]) == 0 and int(x[2][0, -1]) == 3
        with torch.no_grad():
            a, b = eager(*x)[0], traced(*x)[0]
        assert torch.isfinite(a).all() and torch.isfinite(b).all(), "NaN/inf in padded rows"
        assert torch.allclose(a, b, atol=1e-4 * max(1.0, float(a.abs().max()))), (arch, (a - b).abs().max())
        # left padding does not change real positions' logits
        for r, p in enumerate(prompts):
            with torch.no_grad():
                alone = eager(*oracle.batch_inputs([p]))[0][0]
            assert torch.allclose(a[r, -len(p):], alone, atol=1e-4 * max(1.0, float(alone.abs().max()))), (arch, r, (a[r, -len(p):] - alone).abs().max())
        # non-degenerate: logits vary across tokens and positions
        assert float(a.std()) > 1e-3


def test_hooks_removed_and_model_unchanged():
    cfg = examples.make_config("gpt2", layers=2)
    model = examples.build_model("gpt2", cfg, seed=1)
    model.train()
    x = oracle.batch_inputs([[1, 2, 3, 4]])
    with torch.no_grad():
        model.eval()
        before = model(*x)[0]
        model.train()
    with tempfile.TemporaryDirectory() as out:
        tok = os.path.join(out, "tok-src.json")
        examples.make_tokenizer(tok, 512)
        export_model(model, out, tokenizer=tok, example_text="a cat and a dog")
        with open(os.path.join(out, "torchsight.json")) as f:
            man = json.load(f)
        assert man["architecture"] == "GPT2LMHeadModel"
        assert man["specialTokens"]["eos"] == 511  # from the tokenizer's <|endoftext|>
    assert model.training, "training flag not restored"
    for _, mod in model.named_modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks
    assert "forward" not in vars(model)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(*x)[0], before)


class Twice(torch.nn.Module):
    """Calls one submodule twice: two calls, its sites fire twice."""

    def __init__(self, vocab=512, d=16):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.shared = torch.nn.Linear(d, d)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, input_ids, attention_mask, position_ids):
        h = self.emb(input_ids)
        h = self.shared(torch.tanh(self.shared(h)))
        return (self.head(h), h)


def test_module_called_twice():
    tok = os.path.join(TMP, "tok.json")
    examples.make_tokenizer(tok, 512)
    torch.manual_seed(0)
    out = os.path.join(TMP, "twice")
    m = export_model(Twice(), out, tokenizer=tok, example_text="the cat")
    mods = {e["path"]: e for e in m["modules"]}
    assert mods["shared"]["calls"] == 2
    assert m["sites"].count("shared:output") == 2 and m["sites"].count("shared:input:0") == 2
    g = graph_sites(torch.jit.load(os.path.join(out, "model.pt")))
    assert g.count("shared:output") == 2
    assert mods[""]["output"]["items"][1]["site"] == ":output:1"
    assert mods["shared"]["apply"] == {"kind": "linear"}


def test_bfloat16_export():
    cfg = examples.make_config("llama", layers=2)
    model = examples.build_model("llama", cfg, seed=0)
    out = os.path.join(TMP, "bf16")
    m = export_model(model, out, tokenizer=os.path.join(model_dir("llama"), "tokenizer.json"),
                     dtype="bfloat16", config=cfg)
    assert m["dtype"] == "bfloat16"
    assert next(model.parameters()).dtype == torch.float32  # the user's model is restored
    traced = torch.jit.load(os.path.join(out, "model.pt"))
    x = oracle.batch_inputs([[1, 2, 3], [4, 5, 6, 7, 8]], 511)
    with torch.no_grad():
        y = traced(*x)[0]
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


class BakedLength(torch.nn.Module):
    """Builds its causal mask from int(seq_len): the trace bakes the example length."""

    def __init__(self, vocab=512, d=16):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.proj = torch.nn.Linear(d, d)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, input_ids, attention_mask, position_ids):
        n = int(input_ids.shape[1])
        causal = torch.ones(n, n).tril() / torch.arange(1, n + 1).float()[:, None]
        h = causal @ self.proj(self.emb(input_ids))
        return (self.head(h),)


class BakedScale(torch.nn.Module):
    """Scales by a Python number computed from the length: traced runs at other lengths give wrong values."""

    def __init__(self, vocab=512, d=16):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, input_ids, attention_mask, position_ids):
        h = self.emb(input_ids).cumsum(1) * (1.0 / float(input_ids.shape[1]))
        return (self.head(h),)


def test_baked_length_rejected():
    tok = os.path.join(TMP, "tok.json")
    examples.make_tokenizer(tok, 512)
    for cls in (BakedLength, BakedScale):
        torch.manual_seed(0)
        model = cls()
        out = os.path.join(TMP, "baked-" + cls.__name__)
        try:
            export_model(model, out, tokenizer=tok, example_text=examples.EXAMPLE_TEXT)
        except ExportVerificationError as e:
            msg = str(e)
            assert "export check failed on case 'length" in msg, msg
            assert "baked" in msg, msg
            if cls is BakedScale:
                assert "max abs diff" in msg, msg
            assert "Tracer warnings" in msg and "in forward()" in msg, msg
            print(f"  {cls.__name__} rejected: {msg.splitlines()[0][:150]}...")
        else:
            raise AssertionError(f"{cls.__name__} export was not rejected")
        assert not os.path.exists(os.path.join(out, "model.pt")), "a rejected export wrote model.pt"


def test_bpe_round_trip_and_pretokenizer():
    d = model_dir("gpt2")
    tok = BPETokenizer.from_file(os.path.join(d, "tokenizer.json"))
    for s in ["The Eiffel Tower is in the city of Paris.", "café – 東京", "  leading and trailing  ",
              "tabs\tand\nnewlines\n\n", "I'll say it's 3.14, isn't it?", "emoji 🐈 and ü", "",
              "<|endoftext|>Hello<|endoftext|>"]:
        ids = tok.encode(s)
        assert all(0 <= i < 512 for i in ids)
        assert tok.decode(ids) == s, (s, ids, tok.decode(ids))
    assert tok.encode("<|endoftext|>") == [511]
    assert len(tok.encode("the city")) < len("the city")  # merges applied
    assert pre_tokenize("Hello world's  end 123!!") == ["Hello", " world", "'s", " ", " end", " 123", "!!"]
    assert pre_tokenize("a  \n b") == ["a", "  \n", " b"]
    assert pre_tokenize("x   ") == ["x", "   "]
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["model"]["type"] == "BPE" and doc["pre_tokenizer"]["type"] == "ByteLevel"
    assert len(doc["model"]["vocab"]) == 512 and len(doc["model"]["merges"]) == 255
    assert doc["added_tokens"][0]["id"] == 511 and doc["added_tokens"][0]["content"] == "<|endoftext|>"
    assert all(isinstance(x, str) and len(x.split(" ")) == 2 for x in doc["model"]["merges"])
    # deterministic
    a, b = os.path.join(TMP, "t1.json"), os.path.join(TMP, "t2.json")
    examples.make_tokenizer(a)
    examples.make_tokenizer(b)
    assert open(a, "rb").read() == open(b, "rb").read()


def test_oracle_cli():
    d = model_dir("llama")
    ids = _example_ids(d)
    code = ("x = batch_inputs([ids, ids[:3]])\n"
            "seen = {}\n"
            "h = get_module('model.layers.1.mlp').register_forward_hook(lambda m, i, o: seen.setdefault('mlp', o))\n"
            "logits = model(*x)[0]\n"
            "h.remove()\n"
            "result = {'logits': logits[:, -1], 'mlp_shape': list(seen['mlp'].shape), 'n': 3}\n")
    req = json.dumps({"model": d, "code": "ids = " + json.dumps(ids) + "\n" + code})
    env = dict(os.environ, PYTHONPATH=PYROOT)
    p = subprocess.run([sys.executable, "-m", "torchsight_testing.oracle"], input=req, capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(p.stdout)
    assert res["n"] == 3 and res["mlp_shape"] == [2, len(ids), 64]
    assert res["logits"]["shape"] == [2, 512]
    traced = torch.jit.load(os.path.join(d, "model.pt"))
    with torch.no_grad():
        want = traced(*oracle.batch_inputs([ids, ids[:3]], 511))[0][:, -1]
    got = torch.tensor(res["logits"]["data"]).reshape(2, 512)
    assert torch.allclose(got, want.double().float(), atol=1e-5)
    p = subprocess.run([sys.executable, "-m", "torchsight_testing.oracle"], input=json.dumps(
        {"model": d, "code": "raise ValueError('boom')"}), capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1 and "boom" in json.loads(p.stdout)["error"]


def test_examples_cli():
    out = os.path.join(TMP, "cli-gpt2")
    env = dict(os.environ, PYTHONPATH=PYROOT)
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "torchsight_testing.examples", "--arch", "gpt2", "--out", out,
                        "--layers", "2", "--d-model", "32", "--heads", "2", "--vocab", "400"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(out + " ")
    with open(os.path.join(out, "torchsight.json")) as f:
        m = json.load(f)
    assert m["vocabSize"] == 400 and m["specialTokens"]["pad"] == 399
    assert sum(1 for e in m["modules"] if e["type"] == "GPT2Block") == 2
    with open(os.path.join(out, "eager_model.json")) as f:
        info = json.load(f)
    assert info["arch"] == "gpt2" and info["config"]["n_embd"] == 32
    print(f"  examples CLI (small gpt2): {time.time() - t0:.1f}s")


def test_model_dts():
    # export_model writes model.d.ts: the module tree as TypeScript types (src/trace/types.ts reads them)
    from torchsight_export.dts import dts_text
    for arch, root, list_path, block in (("gpt2", "GPT2LMHeadModel", "h", "GPT2Block"),
                                         ("llama", "LlamaForCausalLM", "layers", "LlamaDecoderLayer")):
        d = model_dir(arch)
        with open(os.path.join(d, "torchsight.json")) as f:
            m = json.load(f)
        with open(os.path.join(d, "model.d.ts")) as f:
            text = f.read()
        assert text == dts_text(m), arch
        assert f"export interface {root} {{" in text, text[:400]
        assert f"type: '{root}';" in text and "outputNames: ['logits'];" in text
        layers = sum(1 for e in m["modules"] if e["type"] == block)
        assert f"    {list_path}: ModuleList;" in text
        assert f"  list: {block};\n  length: {layers};" in text, text
        assert f"export interface {block} {{" in text and text.count(f"export interface {block} ") == 1
        assert "    mlp: " in text and "lm_head: Linear;" in text
        # every module class appears, and every named child
        for e in m["modules"]:
            assert f"type: '{e['type']}';" in text, e["type"]
            name = e["path"].rsplit(".", 1)[-1]
            if e["path"] and not name.isdigit():
                assert f"    {name}: " in text, e["path"]
    # lists whose children differ are tuples; odd names are quoted; None/pruned/other have words
    t = lambda: {"kind": "tensor", "site": "s"}
    mods = [{"path": "", "type": "Net", "inputs": [t()], "output": {"kind": "tuple", "items": [t(), {"kind": "none"}]}},
            {"path": "seq", "type": "Sequential", "inputs": [t()], "output": t()},
            {"path": "seq.0", "type": "Linear", "inputs": [t()], "output": t()},
            {"path": "seq.1", "type": "ReLU", "inputs": [t()], "output": {"kind": "tensor", "site": "x", "pruned": True}},
            {"path": "d", "type": "ModuleDict", "inputs": [], "output": None},
            {"path": "d.a-b", "type": "any", "inputs": [{"kind": "other"}], "output": t()}]
    text = dts_text({"architecture": "Net", "outputNames": ["logits"], "modules": mods})
    assert "children: [Linear, ReLU];" in text and "output: ['tensor', 'none'];" in text
    assert "output: 'pruned';" in text and "inputs: ['other'];" in text and "output: null;" in text
    assert "'a-b': anyModule;" in text and "export interface anyModule {" in text


def main():
    tests = [(k, v) for k, v in globals().items() if k.startswith("test_") and callable(v)]
    failed = 0
    for name, fn in tests:
        t0 = time.time()
        try:
            fn()
            print(f"ok   {name} ({time.time() - t0:.1f}s)")
        except Exception:
            failed += 1
            import traceback
            print(f"FAIL {name}")
            traceback.print_exc()
    print(f"{len(tests) - failed}/{len(tests)} passed")
    if not failed:
        import shutil
        shutil.rmtree(TMP, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
