"""How a transformers causal LM is traced: the root forwards of model.pt and step.pt, and the
key/value-cache shape, from the model's config and transformers' own cache API."""
from __future__ import annotations

import contextlib
import inspect
from typing import Iterator, Tuple

import torch

from .families import Family, family_of
from .masks import traceable_masks


def is_transformers_model(model) -> bool:
    return type(model).__module__.startswith("transformers.") and hasattr(model, "config")


class HFAdapter:
    """Wraps one transformers model for export. ``forward`` and ``step`` are what the traces run
    (installed as the instance's forward while tracing, so every submodule keeps its eager path)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.config = model.config
        self.family: Family = family_of(self.config, type(model).__name__)
        self._orig = type(model).forward.__get__(model)
        # transformers 5 calls the cache argument ``cache``; 4.x ``past_key_values``
        params = inspect.signature(type(model).forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        impl = getattr(self.config, "_attn_implementation", None)
        if impl not in (None, "eager"):
            # the eager kernel adds the mask to the scores and exposes them to hooks like the others
            self.config._attn_implementation = "eager"

    # -- shapes --------------------------------------------------------------------------------
    def cache_shape(self) -> Tuple[int, int, int]:
        """(layers, key/value heads, head_dim) of the cache, as the attention layers store it."""
        c = self.config.get_text_config(decoder=True) if hasattr(self.config, "get_text_config") else self.config
        layers = int(c.num_hidden_layers)
        heads = int(c.num_attention_heads)
        kv = getattr(c, "num_key_value_heads", None) or heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        return layers, int(kv), int(head_dim)

    # -- forwards ------------------------------------------------------------------------------
    def full(self, input_ids, attention_mask, position_ids):
        """The eager model as transformers runs it (its own masks): the logits."""
        out = self._orig(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False, return_dict=True)
        return out.logits

    def forward(self, input_ids, attention_mask, position_ids):
        """model.pt's root: ``(logits,)``."""
        return (self.full(input_ids, attention_mask, position_ids),)

    def step(self, input_ids, attention_mask, position_ids, past_k, past_v):
        """step.pt's root: one cached step, ``(logits, present_k, present_v)`` with caches
        ``[layers, batch, kv_heads, past, head_dim]``. The cache is transformers' DynamicCache,
        filled from the tensors; its full-length layers with the sliding window applied by the mask
        attend exactly as transformers' cropped sliding-window layers do."""
        layers = past_k.shape[0]
        cache = _filled_cache(past_k, past_v)
        out = self._orig(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, return_dict=True, **{self._cache_arg: cache})
        cache = getattr(out, self._cache_arg)
        ks = torch.stack([cache.layers[i].keys for i in range(layers)])
        vs = torch.stack([cache.layers[i].values for i in range(layers)])
        return (out.logits, ks, vs)

    @contextlib.contextmanager
    def installed(self, which: str) -> Iterator[None]:
        """Runs ``self.model(...)`` as ``forward`` or ``step``, with trace-friendly masks."""
        prev = self.model.__dict__.get("forward")
        self.model.forward = self.forward if which == "forward" else self.step
        try:
            with traceable_masks(self.model):
                yield
        finally:
            if prev is None:
                del self.model.forward
            else:
                self.model.forward = prev


def _filled_cache(past_k: torch.Tensor, past_v: torch.Tensor):
    """transformers' DynamicCache holding ``past_k[i]``/``past_v[i]`` in layer i. The layers are filled
    directly rather than through ``update``: its lazy start concatenates onto a constant empty tensor,
    which a trace would pin to the export's device."""
    from transformers.cache_utils import DynamicCache, DynamicLayer
    cache = DynamicCache()
    filled = []
    for i in range(past_k.shape[0]):
        layer = DynamicLayer()
        layer.lazy_initialization(past_k[i], past_v[i])  # the version's own bookkeeping (device, flags)
        layer.keys, layer.values = past_k[i], past_v[i]
        filled.append(layer)
    cache.layers = filled
    return cache
