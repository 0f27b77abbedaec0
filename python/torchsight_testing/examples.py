"""Small seeded example models with Hugging Face module names (GPT-2 and Llama shapes), a byte-level
BPE tokenizer trained on a built-in corpus, and a CLI that exports them.

    python3 -m torchsight_testing.examples --arch gpt2|llama --out DIR [--seed 0] [--layers N]
        [--d-model N] [--heads N] [--vocab N]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Optional, Tuple

import torch
from torch import nn

from .bpe_train import tokenizer_json, train_bpe

EXAMPLE_TEXT = "The Eiffel Tower is in the city of"
SPECIAL = "<|endoftext|>"


# --------------------------------------------------------------------------------------------
# masks and shared pieces (tensor ops only, so the trace generalises to any length and batch)

def causal_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype,
                        input_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Additive mask ``[batch, 1, q, k]``: 0 where query q may attend key k (k <= q and k not padding),
    the dtype's min elsewhere. A padded query row may attend itself, so no row is fully masked.
    With ``input_ids`` (a key/value cache step), the queries are the last ``input_ids.shape[1]``
    of the ``attention_mask.shape[1]`` keys; their offset is computed with tensor ops only."""
    idx = torch.cumsum(torch.ones_like(attention_mask), dim=-1)  # 1..seq per row
    qidx = idx
    if input_ids is not None:
        qrel = torch.cumsum(torch.ones_like(input_ids), dim=-1)  # 1..q per row
        qidx = qrel + (idx[:, -1:] - qrel[:, -1:])  # shifted so the last query is the last key
    q = qidx.unsqueeze(-1)  # [b, q, 1]
    k = idx.unsqueeze(-2)  # [b, 1, k]
    allowed = (k <= q) & (attention_mask.unsqueeze(-2) > 0)
    allowed = allowed | (k == q)
    add = torch.zeros_like(allowed, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return add.unsqueeze(1)


def attend(q, k, v, mask, scale: float):
    """softmax(q k^T * scale + mask) v with the softmax in float32."""
    # float32 scores; adding the mask promotes (no .float() on it: a no-op cast would re-bind the
    # mask inside this module's trace scope and make later layers read it from here)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale + mask
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    return torch.matmul(probs, v)


def _init_weights(module: nn.Module, std: float = 0.02):
    for m in module.modules():
        if isinstance(m, (nn.Linear, Conv1D)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# GPT-2

class Conv1D(nn.Module):
    """HF GPT-2's Conv1D: a linear layer with weight stored [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class NewGELUActivation(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["n_embd"]
        self.num_heads = cfg["n_head"]
        self.head_dim = d // self.num_heads
        self.embed_dim = d
        self.c_attn = Conv1D(3 * d, d)
        self.c_proj = Conv1D(d, d)
        self.attn_dropout = nn.Dropout(cfg.get("attn_pdrop", 0.1))
        self.resid_dropout = nn.Dropout(cfg.get("resid_pdrop", 0.1))

    def _split_heads(self, x):
        x = x.view(x.size()[:-1] + (self.num_heads, self.head_dim))
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask, past_k=None, past_v=None):
        q, k, v = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        if past_k is not None:  # key/value cache: earlier positions' keys and values come first
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = torch.softmax(scores + attention_mask, dim=-1).to(v.dtype)
        probs = self.attn_dropout(probs)
        out = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        out = out.view(out.size()[:-2] + (self.embed_dim,))
        out = self.resid_dropout(self.c_proj(out))
        return (out, None) if past_k is None else (out, (k, v))


class GPT2MLP(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["n_embd"]
        inner = cfg.get("n_inner") or 4 * d
        self.c_fc = Conv1D(inner, d)
        self.c_proj = Conv1D(d, inner)
        self.act = NewGELUActivation()
        self.dropout = nn.Dropout(cfg.get("resid_pdrop", 0.1))

    def forward(self, hidden_states):
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


class GPT2Block(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["n_embd"]
        self.ln_1 = nn.LayerNorm(d, eps=cfg["layer_norm_epsilon"])
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(d, eps=cfg["layer_norm_epsilon"])
        self.mlp = GPT2MLP(cfg)

    def forward(self, hidden_states, attention_mask, past_k=None, past_v=None):
        if past_k is None:
            attn = self.attn(self.ln_1(hidden_states), attention_mask)
        else:
            attn = self.attn(self.ln_1(hidden_states), attention_mask, past_k, past_v)
        hidden_states = hidden_states + attn[0]
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return (hidden_states,) if past_k is None else (hidden_states, attn[1][0], attn[1][1])


class GPT2Model(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["n_embd"]
        self.wte = nn.Embedding(cfg["vocab_size"], d)
        self.wpe = nn.Embedding(cfg["n_positions"], d)
        self.drop = nn.Dropout(cfg.get("embd_pdrop", 0.1))
        self.h = nn.ModuleList([GPT2Block(cfg) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(d, eps=cfg["layer_norm_epsilon"])

    def forward(self, input_ids, attention_mask, position_ids, past_k=None, past_v=None):
        hidden_states = self.drop(self.wte(input_ids) + self.wpe(position_ids))
        if past_k is None:
            mask = causal_padding_mask(attention_mask, hidden_states.dtype)
            for block in self.h:
                hidden_states = block(hidden_states, mask)[0]
            return (self.ln_f(hidden_states),)
        mask = causal_padding_mask(attention_mask, hidden_states.dtype, input_ids)
        ks, vs = [], []
        for i, block in enumerate(self.h):
            out = block(hidden_states, mask, past_k[i], past_v[i])
            hidden_states = out[0]
            ks.append(out[1])
            vs.append(out[2])
        return (self.ln_f(hidden_states), torch.stack(ks), torch.stack(vs))


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.config = dict(cfg)
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        _init_weights(self, cfg.get("initializer_range", 0.02))
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2

    def forward(self, input_ids, attention_mask, position_ids, past_k=None, past_v=None):
        """With ``past_k``/``past_v`` ([layers, batch, heads, past, head_dim], past may be 0) it is one
        key/value-cache step and also returns the new cache."""
        if past_k is None:
            hidden_states = self.transformer(input_ids, attention_mask, position_ids)[0]
            return (self.lm_head(hidden_states),)
        out = self.transformer(input_ids, attention_mask, position_ids, past_k, past_v)
        return (self.lm_head(out[0]), out[1], out[2])

    def cache_shape(self):
        """(layers, key/value heads, head_dim) of the key/value cache."""
        c = self.config
        return (c["n_layer"], c["n_head"], c["n_embd"] // c["n_head"])


GPT2_DEFAULTS = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=512, n_positions=128,
                     n_embd=64, n_layer=12, initializer_range=0.2, n_head=4, n_inner=None, layer_norm_epsilon=1e-5,
                     activation_function="gelu_new", embd_pdrop=0.1, attn_pdrop=0.1, resid_pdrop=0.1,
                     tie_word_embeddings=True)


# --------------------------------------------------------------------------------------------
# Llama

class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        h = hidden_states.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return (self.weight.float() * h).to(input_dtype)


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x, position_ids):
        freqs = position_ids.float().unsqueeze(-1) * self.inv_freq.float()  # [b, s, hd/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def _rotate_half(x, half: int):
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["hidden_size"]
        self.num_heads = cfg["num_attention_heads"]
        self.num_kv = cfg["num_key_value_heads"]
        self.head_dim = d // self.num_heads
        self.q_proj = nn.Linear(d, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.num_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.num_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d, bias=False)

    def _heads(self, x, n):
        return x.view(x.size()[:-1] + (n, self.head_dim)).transpose(1, 2)

    def forward(self, hidden_states, attention_mask, cos, sin, past_k=None, past_v=None):
        q = self._heads(self.q_proj(hidden_states), self.num_heads)
        k = self._heads(self.k_proj(hidden_states), self.num_kv)
        v = self._heads(self.v_proj(hidden_states), self.num_kv)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        half = self.head_dim // 2
        q = q * cos + _rotate_half(q, half) * sin
        k = k * cos + _rotate_half(k, half) * sin
        if past_k is not None:  # the cache holds rotated keys of the key/value heads
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        present = (k, v)
        rep = self.num_heads // self.num_kv
        k = torch.repeat_interleave(k, rep, dim=1)
        v = torch.repeat_interleave(v, rep, dim=1)
        out = attend(q, k, v, attention_mask, 1.0 / math.sqrt(self.head_dim))
        out = out.transpose(1, 2).contiguous()
        out = out.view(out.size()[:-2] + (self.num_heads * self.head_dim,))
        return (self.o_proj(out), None) if past_k is None else (self.o_proj(out), present)


class LlamaMLP(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d, inner = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(d, inner, bias=False)
        self.up_proj = nn.Linear(d, inner, bias=False)
        self.down_proj = nn.Linear(inner, d, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.self_attn = LlamaAttention(cfg)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, hidden_states, attention_mask, cos, sin, past_k=None, past_v=None):
        if past_k is None:
            attn = self.self_attn(self.input_layernorm(hidden_states), attention_mask, cos, sin)
        else:
            attn = self.self_attn(self.input_layernorm(hidden_states), attention_mask, cos, sin, past_k, past_v)
        h = hidden_states + attn[0]
        h = h + self.mlp(self.post_attention_layernorm(h))
        return (h,) if past_k is None else (h, attn[1][0], attn[1][1])


class LlamaModel(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["hidden_size"]
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], d)
        self.layers = nn.ModuleList([LlamaDecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(d, cfg["rms_norm_eps"])
        self.rotary_emb = LlamaRotaryEmbedding(d // cfg["num_attention_heads"], cfg["rope_theta"])

    def forward(self, input_ids, attention_mask, position_ids, past_k=None, past_v=None):
        h = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(h, position_ids)
        if past_k is None:
            mask = causal_padding_mask(attention_mask, h.dtype)
            for layer in self.layers:
                h = layer(h, mask, cos, sin)[0]
            return (self.norm(h),)
        mask = causal_padding_mask(attention_mask, h.dtype, input_ids)
        ks, vs = [], []
        for i, layer in enumerate(self.layers):
            out = layer(h, mask, cos, sin, past_k[i], past_v[i])
            h = out[0]
            ks.append(out[1])
            vs.append(out[2])
        return (self.norm(h), torch.stack(ks), torch.stack(vs))


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.config = dict(cfg)
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        _init_weights(self, cfg.get("initializer_range", 0.02))

    def forward(self, input_ids, attention_mask, position_ids, past_k=None, past_v=None):
        if past_k is None:
            h = self.model(input_ids, attention_mask, position_ids)[0]
            return (self.lm_head(h),)
        out = self.model(input_ids, attention_mask, position_ids, past_k, past_v)
        return (self.lm_head(out[0]), out[1], out[2])

    def cache_shape(self):
        c = self.config
        return (c["num_hidden_layers"], c["num_key_value_heads"], c["hidden_size"] // c["num_attention_heads"])


LLAMA_DEFAULTS = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=512, initializer_range=0.2, hidden_size=64,
                      intermediate_size=172, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                      rope_theta=10000.0, rms_norm_eps=1e-6, max_position_embeddings=128,
                      hidden_act="silu", tie_word_embeddings=False)

ARCHS = {"gpt2": (GPT2LMHeadModel, GPT2_DEFAULTS), "llama": (LlamaForCausalLM, LLAMA_DEFAULTS)}


def make_config(arch: str, layers: Optional[int] = None, d_model: Optional[int] = None,
                heads: Optional[int] = None, vocab: Optional[int] = None) -> dict:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; use one of {sorted(ARCHS)}")
    cfg = dict(ARCHS[arch][1])
    if arch == "gpt2":
        if layers is not None:
            cfg["n_layer"] = layers
        if d_model is not None:
            cfg["n_embd"] = d_model
        if heads is not None:
            cfg["n_head"] = heads
    else:
        if layers is not None:
            cfg["num_hidden_layers"] = layers
        if d_model is not None:
            cfg["hidden_size"] = d_model
            cfg["intermediate_size"] = int(round(d_model * 172 / 64))
        if heads is not None:
            cfg["num_attention_heads"] = heads
            cfg["num_key_value_heads"] = max(1, heads // 2) if heads % 2 == 0 else heads
    if vocab is not None:
        cfg["vocab_size"] = vocab
    special = cfg["vocab_size"] - 1
    cfg.update(bos_token_id=special, eos_token_id=special, pad_token_id=special)
    return cfg


def build_model(arch: str, cfg: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = ARCHS[arch][0](cfg)
    return model.eval()


# --------------------------------------------------------------------------------------------
# tokenizer

_PLACES = [("Paris", "France", "the Eiffel Tower"), ("Rome", "Italy", "the Colosseum"),
           ("London", "England", "Big Ben"), ("Berlin", "Germany", "the Brandenburg Gate"),
           ("Madrid", "Spain", "the Royal Palace"), ("Athens", "Greece", "the Acropolis"),
           ("Tokyo", "Japan", "the Tokyo Tower"), ("Cairo", "Egypt", "the Great Pyramid"),
           ("New York", "the United States", "the Statue of Liberty"), ("Sydney", "Australia", "the Opera House"),
           ("Moscow", "Russia", "the Red Square"), ("Beijing", "China", "the Forbidden City"),
           ("Lisbon", "Portugal", "the Belem Tower"), ("Vienna", "Austria", "the Opera"),
           ("Amsterdam", "the Netherlands", "the Rijksmuseum"), ("Prague", "the Czech Republic", "the Charles Bridge")]
_ANIMALS = ["cat", "dog", "horse", "bird", "fox", "rabbit", "mouse", "cow", "sheep", "lion", "tiger", "bear",
            "wolf", "duck", "goat", "pig"]
_ACTIONS = ["sleeps on the sofa", "runs in the park", "eats its dinner", "plays with a ball", "sits by the window",
            "chases the little mouse", "drinks fresh water", "walks along the river", "hides under the table",
            "watches the birds in the garden", "waits at the door", "jumps over the fence"]
_FOODS = ["bread", "cheese", "soup", "pasta", "fish", "salad", "cake", "coffee", "tea", "wine", "pizza", "rice"]
_TEXT = """
The Eiffel Tower is in the city of Paris, the capital of France. It was built in 1889 for the World's Fair,
and it is one of the most famous buildings in the world. Every year millions of people visit the tower.
From the top you can see the river Seine, the old bridges, the museums and the long streets of the city.
Paris is known for its food, its art and its music. There are small restaurants on every corner, where
people eat fresh bread, cheese and soup, and drink coffee in the morning. The Louvre is a large museum in
Paris; it holds the Mona Lisa. Many students live in the city, and they like to walk by the river at night.
Cats and dogs are the most common pets. A cat likes to sleep in the sun, and a dog likes to run and play.
My dog is called Max and my cat is called Luna. They are good friends, although the cat is the boss of the
house. In the evening the dog waits for me at the door, and the cat watches from the top of the stairs.
The restaurant on the corner serves the best pizza in town. The chef was born in Naples, in the south of
Italy, and he makes the dough by hand every day. We ordered two pizzas, a green salad and a bottle of red
wine. The waiter was friendly and the prices were fair, so we will come back next week with our friends.
The capital of Italy is Rome. The capital of Germany is Berlin. The capital of Spain is Madrid. The capital
of Japan is Tokyo. What is the capital of France? The answer is Paris. Where is the Eiffel Tower? It is in
Paris. Who lives in the house next to the park? An old man with a small brown dog. How many people live in
the city? About two million people live in the city, and many more work there during the day.
"I don't know," she said, "but I'll ask my brother. He's been there before, and he'd know the way."
Numbers: 1, 2, 3, 10, 42, 100, 2024, 3.14 and 1,000,000. Prices: $5, $12.50, 20% off. Time: 10:30 am.
"""


def build_corpus() -> str:
    """The built-in English corpus (a few thousand words, deterministic)."""
    lines = [_TEXT.strip()]
    for i, (city, country, landmark) in enumerate(_PLACES):
        lines.append(f"{landmark[0].upper() + landmark[1:]} is in the city of {city}. {city} is the capital of "
                     f"{country}. People travel to {city} to see {landmark} and to eat in its restaurants.")
        lines.append(f"The city of {city} has many museums, parks and restaurants. In {city} the people speak "
                     f"the language of {country}, and the food is very good.")
    for i, animal in enumerate(_ANIMALS):
        for j in range(4):
            act = _ACTIONS[(i * 5 + j * 3) % len(_ACTIONS)]
            lines.append(f"The {animal} {act}. A {animal} is an animal, and the {animal}s of the farm are happy.")
    for i, food in enumerate(_FOODS):
        city = _PLACES[i % len(_PLACES)][0]
        lines.append(f"In a small restaurant in {city} we ate {food} and the waiter brought more {food} "
                     f"for the table. The {food} was warm and the restaurant was full of people.")
    return "\n".join(lines) + "\n"


def make_tokenizer(path: str, vocab_size: int = 512) -> dict:
    """Train a GPT-2 style byte-level BPE on the built-in corpus and write a HF tokenizer.json to
    ``path``; ``<|endoftext|>`` gets the last id (vocab_size - 1). Returns the JSON document."""
    vocab, merges = train_bpe(build_corpus(), vocab_size, (SPECIAL,))
    if len(vocab) != vocab_size:
        raise RuntimeError(f"the corpus only supports {len(vocab)} tokens, asked for {vocab_size}")
    doc = tokenizer_json(vocab, merges, (SPECIAL,))
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    return doc


# --------------------------------------------------------------------------------------------
# CLI

def export_example(arch: str, out: str, seed: int = 0, layers: Optional[int] = None, d_model: Optional[int] = None,
                   heads: Optional[int] = None, vocab: Optional[int] = None,
                   tokenizer_vocab: Optional[int] = None) -> dict:
    """``tokenizer_vocab`` smaller than the model's vocabulary makes a model with GPT-2's 50257
    rows from the small built-in corpus: the tokenizer uses the first ids, the rest are never produced."""
    from torchsight_export.export import export_model
    os.makedirs(out, exist_ok=True)
    cfg = make_config(arch, layers, d_model, heads, vocab)
    tok_vocab = tokenizer_vocab or cfg["vocab_size"]
    if tok_vocab > cfg["vocab_size"]:
        raise ValueError(f"tokenizer vocabulary {tok_vocab} exceeds the model's {cfg['vocab_size']}")
    tok_path = os.path.join(out, "tokenizer.json")
    make_tokenizer(tok_path, tok_vocab)
    model = build_model(arch, cfg, seed)
    special = tok_vocab - 1
    manifest = export_model(model, out, tokenizer=tok_path, example_text=EXAMPLE_TEXT,
                            architecture=ARCHS[arch][0].__name__, config=cfg,
                            special_tokens={"bos": special, "eos": special, "pad": special})
    torch.save(model.state_dict(), os.path.join(out, "eager_state.pt"))
    with open(os.path.join(out, "eager_model.json"), "w", encoding="utf-8") as f:
        json.dump({"arch": arch, "seed": seed, "config": cfg}, f, indent=1)
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m torchsight_testing.examples",
                                description="Build, seed and export a small example model.")
    p.add_argument("--arch", choices=sorted(ARCHS), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", type=int)
    p.add_argument("--d-model", type=int, dest="d_model")
    p.add_argument("--heads", type=int)
    p.add_argument("--vocab", type=int)
    p.add_argument("--tokenizer-vocab", type=int, dest="tokenizer_vocab",
                   help="a smaller tokenizer than the model's vocabulary (the corpus supports about 1000)")
    a = p.parse_args(argv)
    t0 = time.time()
    export_example(a.arch, a.out, a.seed, a.layers, a.d_model, a.heads, a.vocab, a.tokenizer_vocab)
    print(f"{a.out} {time.time() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
