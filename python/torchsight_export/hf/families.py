"""The Hugging Face architectures the exporter has an adapter for, and the refusal for the rest."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class Family:
    model_type: str
    name: str
    # what the export relies on in this family (shown in errors and in the README's table)
    features: str


FAMILIES: Dict[str, Family] = {f.model_type: f for f in (
    Family("gpt2", "GPT-2", "learned positions, Conv1D projections, tied embeddings"),
    Family("llama", "Llama", "rotary positions, grouped-query attention, RMSNorm"),
    Family("mistral", "Mistral", "rotary positions, grouped-query attention, sliding window"),
    Family("qwen2", "Qwen2", "rotary positions, grouped-query attention, q/k/v biases, optional sliding window"),
    Family("gemma", "Gemma", "rotary positions, multi-query attention, scaled tied embeddings, (1 + w) RMSNorm"),
    Family("gpt_neox", "GPT-NeoX (Pythia)", "partial rotary positions, fused qkv, parallel residual"),
    Family("phi", "Phi", "partial rotary positions, parallel attention and MLP, final LayerNorm"),
)}

# rotary variants whose frequencies depend on the sequence seen (data-dependent under a trace)
_DYNAMIC_ROPE = {"dynamic", "longrope"}


class UnsupportedArchitecture(ValueError):
    """The model's architecture has no adapter (or uses a feature the adapter does not handle)."""


def family_of(config, class_name: Optional[str] = None) -> Family:
    """The Family of a transformers config (of a model of class ``class_name``), or
    UnsupportedArchitecture naming the architecture and what is missing."""
    model_type = getattr(config, "model_type", None)
    arch = class_name or ", ".join(getattr(config, "architectures", None) or []) or model_type or "unknown"
    fam = FAMILIES.get(model_type)
    if fam is None:
        supported = ", ".join(f"{f.name} ({t})" for t, f in FAMILIES.items())
        raise UnsupportedArchitecture(
            f"architecture {arch} (model_type {model_type!r}) is not supported: torchsight has no adapter for it "
            "(a trace-friendly attention mask and a key/value-cache mapping for its layers). "
            f"Supported: {supported}.")
    rope = _rope_type(config)
    if rope in _DYNAMIC_ROPE:
        raise UnsupportedArchitecture(
            f"{arch}: rotary scaling {rope!r} recomputes its frequencies from the sequence length at run time, "
            "which a TorchScript trace would freeze; only static rotary variants (default, linear, llama3, yarn) "
            "are supported")
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "add_cross_attention", False):
        raise UnsupportedArchitecture(f"{arch}: cross-attention is not supported (decoder-only models only)")
    return fam


def _rope_type(config) -> Optional[str]:
    for key in ("rope_parameters", "rope_scaling"):
        p = getattr(config, key, None)
        if isinstance(p, dict):
            t = p.get("rope_type", p.get("type"))
            if t:
                return str(t)
    return None
