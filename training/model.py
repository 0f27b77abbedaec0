"""GPT-2 with Hugging Face's module names and parameter layout, so that its state dict loads into
transformers' GPT2LMHeadModel unchanged; runs on torch 1.13 (the exporter) and 2.x (training).

forward(input_ids, attention_mask, position_ids[, past_k, past_v]) is the exporter's protocol:
with ``past_k``/``past_v`` ([layers, batch, heads, past, head_dim]) it is one key/value-cache step
and also returns the new cache; ``cache_shape()`` gives (layers, heads, head_dim).
``train_logits(ids)`` is the training path (no padding, causal attention only).
"""
from __future__ import annotations

import json
import math
import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def causal_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype,
                        input_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Additive mask [batch, 1, q, k]: 0 where query q may attend key k (k <= q, k not padding).
    With ``input_ids`` (a cache step) the queries are the last ``input_ids.shape[1]`` keys. Tensor
    ops only, so a trace generalises to any length and batch. A padded row may attend itself."""
    idx = torch.cumsum(torch.ones_like(attention_mask), dim=-1)
    qidx = idx
    if input_ids is not None:
        qrel = torch.cumsum(torch.ones_like(input_ids), dim=-1)
        qidx = qrel + (idx[:, -1:] - qrel[:, -1:])
    allowed = (idx.unsqueeze(-2) <= qidx.unsqueeze(-1)) & (attention_mask.unsqueeze(-2) > 0)
    allowed = allowed | (idx.unsqueeze(-2) == qidx.unsqueeze(-1))
    add = torch.zeros_like(allowed, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return add.unsqueeze(1)


class Conv1D(nn.Module):
    """HF GPT-2's Conv1D: a linear layer whose weight is stored [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


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

    def _split(self, x):
        return x.view(x.size()[:-1] + (self.num_heads, self.head_dim)).permute(0, 2, 1, 3)

    def _merge(self, x):
        x = x.permute(0, 2, 1, 3).contiguous()
        return x.view(x.size()[:-2] + (self.embed_dim,))

    def forward(self, hidden_states, attention_mask, past_k=None, past_v=None):
        q, k, v = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if past_k is not None:  # the cache holds earlier positions' keys and values
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = torch.softmax(scores + attention_mask, dim=-1).to(v.dtype)
        out = self.c_proj(self._merge(torch.matmul(probs, v)))
        return (out, None) if past_k is None else (out, (k, v))

    def train_forward(self, hidden_states):
        q, k, v = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v), is_causal=True)
        return self.c_proj(self._merge(out))


class GPT2MLP(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["n_embd"]
        inner = cfg.get("n_inner") or 4 * d
        self.c_fc = Conv1D(inner, d)
        self.c_proj = Conv1D(d, inner)
        self.act = NewGELUActivation()

    def forward(self, hidden_states):
        return self.c_proj(self.act(self.c_fc(hidden_states)))


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

    def train_forward(self, hidden_states):
        hidden_states = hidden_states + self.attn.train_forward(self.ln_1(hidden_states))
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class GPT2Model(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["n_embd"]
        self.wte = nn.Embedding(cfg["vocab_size"], d)
        self.wpe = nn.Embedding(cfg["n_positions"], d)
        self.h = nn.ModuleList([GPT2Block(cfg) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(d, eps=cfg["layer_norm_epsilon"])

    def forward(self, input_ids, attention_mask, position_ids, past_k=None, past_v=None):
        hidden_states = self.wte(input_ids) + self.wpe(position_ids)
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
        std = cfg.get("initializer_range", 0.02)
        for name, p in self.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                nn.init.ones_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            elif name.endswith("c_proj.weight"):  # GPT-2's scaled init of the residual projections
                nn.init.normal_(p, std=std / math.sqrt(2 * cfg["n_layer"]))
            else:
                nn.init.normal_(p, std=std)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2

    def forward(self, input_ids, attention_mask, position_ids, past_k=None, past_v=None):
        if past_k is None:
            return (self.lm_head(self.transformer(input_ids, attention_mask, position_ids)[0]),)
        out = self.transformer(input_ids, attention_mask, position_ids, past_k, past_v)
        return (self.lm_head(out[0]), out[1], out[2])

    def train_logits(self, input_ids):
        t = self.transformer
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = t.wte(input_ids) + t.wpe(pos)
        for block in t.h:
            h = block.train_forward(h)
        return self.lm_head(t.ln_f(h))

    def cache_shape(self):
        """(layers, key/value heads, head_dim) of the key/value cache."""
        c = self.config
        return (c["n_layer"], c["n_head"], c["n_embd"] // c["n_head"])


def make_config(vocab_size: int, n_layer: int, n_embd: int, n_head: int, n_positions: int, eos: int) -> dict:
    """A Hugging Face GPT2Config dictionary (no dropout: the model is small and the data unbounded)."""
    return dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=vocab_size,
                n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_inner=None,
                layer_norm_epsilon=1e-5, activation_function="gelu_new", embd_pdrop=0.0, attn_pdrop=0.0,
                resid_pdrop=0.0, initializer_range=0.02, tie_word_embeddings=True,
                bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)


def load_trained(weights_dir: str) -> GPT2LMHeadModel:
    with open(os.path.join(weights_dir, "config.json"), "r", encoding="utf-8") as f:
        cfg = json.load(f)
    model = GPT2LMHeadModel(cfg)
    state = torch.load(os.path.join(weights_dir, "weights.pt"), map_location="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing != ["lm_head.weight"]:  # lm_head is tied to wte and not stored
        raise RuntimeError(f"weights.pt does not fit config.json: missing {missing}, unexpected {unexpected}")
    return model.eval()
