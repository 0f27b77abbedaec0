"""Trace-friendly attention masks for Hugging Face models.

transformers builds its masks with Python arithmetic on shapes and cache lengths (and, for some
attention kernels, vmap), which torch.jit.trace would freeze at the example's length. These
replacements build the same additive mask from the 2D ``attention_mask`` with tensor ops only, so
one trace serves every length, batch and padding, with or without a key/value cache.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator, Optional

import torch

# the names the modeling modules import from transformers.masking_utils
_CAUSAL = "create_causal_mask"
_SLIDING = "create_sliding_window_causal_mask"


def additive_mask(attention_mask: torch.Tensor, query_length_of: torch.Tensor, dtype: torch.dtype,
                  sliding_window: Optional[int] = None) -> torch.Tensor:
    """``[batch, 1, q, k]``: 0 where query q may attend key k, the dtype's min elsewhere.

    ``attention_mask`` is ``[batch, k]`` and covers the cached keys and the new ones; the ``q``
    queries (``query_length_of.shape[1]``) are the last ``q`` keys. Key k is allowed when it is not
    padding, k <= q, and (with a sliding window) q - k < window, as transformers' own
    ``sliding_window_overlay``. A padded query row may attend itself so that no row is empty (its
    output is never read)."""
    ones = torch.ones_like(attention_mask)
    kidx = torch.cumsum(ones, dim=-1)  # 1..k per row
    qrel = torch.cumsum(torch.ones_like(query_length_of[..., 0], dtype=attention_mask.dtype), dim=-1)
    qidx = qrel + (kidx[:, -1:] - qrel[:, -1:])  # the last query is the last key
    q = qidx.unsqueeze(-1)
    k = kidx.unsqueeze(-2)
    allowed = (k <= q) & (attention_mask.unsqueeze(-2) > 0)
    if sliding_window is not None:
        allowed = allowed & ((q - k) < int(sliding_window))
    allowed = allowed | (k == q)
    add = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    return add.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def _replacement(window_of):
    def create(config=None, inputs_embeds=None, attention_mask=None, cache=None, position_ids=None, **kwargs):
        embeds = inputs_embeds if inputs_embeds is not None else kwargs.get("input_embeds")
        if embeds is None or attention_mask is None or attention_mask.dim() != 2:
            raise RuntimeError("torchsight: the traced mask needs inputs_embeds and a 2D attention_mask")
        return additive_mask(attention_mask, embeds, embeds.dtype, window_of(config))
    return create


def _no_window(config):
    return None


def _window(config):
    w = getattr(config, "sliding_window", None)
    return int(w) if w else None


@contextlib.contextmanager
def traceable_masks(model: torch.nn.Module) -> Iterator[None]:
    """While active, the modeling module of ``model`` builds its masks with ``additive_mask``."""
    module = sys.modules[type(model).__module__]
    saved = {}
    for name, window_of in ((_CAUSAL, _no_window), (_SLIDING, _window)):
        if hasattr(module, name):
            saved[name] = getattr(module, name)
            setattr(module, name, _replacement(window_of))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)
