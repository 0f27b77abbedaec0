"""python -m torchsight_export <hf-id-or-path> <outdir> [--dtype float16] [--example-text TEXT]

Loads a Hugging Face causal LM with transformers (eager attention) and writes a torchsight model
directory (model.pt, step.pt, tokenizer.json, torchsight.json) with export_model. Architectures
without an adapter in torchsight_export.hf are refused with the reason.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .export import DEFAULT_EXAMPLE_TEXT, ExportError, ExportVerificationError, export_model

# Hugging Face helpers known to turn shapes into Python numbers while tracing (mask and position
# construction); named in the error when the export checks fail.
_HF_SHAPE_HELPERS = (
    "_prepare_4d_causal_attention_mask", "_prepare_4d_causal_attention_mask_for_sdpa",
    "_prepare_4d_attention_mask", "AttentionMaskConverter", "_ignore_causal_mask_sdpa",
    "_update_causal_mask", "_prepare_4d_causal_attention_mask_with_cache_position", "create_causal_mask",
    "_make_causal_mask", "_expand_mask", "get_extended_attention_mask", "_prepare_decoder_attention_mask",
)


def _import_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise SystemExit("torchsight export: the Hugging Face path needs the 'transformers' package in this "
                         "Python (pip install transformers); export_model() itself needs only torch.\n"
                         f"({e})")
    return transformers


def _load(transformers, name: str, torch_dtype):
    """The model as transformers builds it, with eager attention (the kernel that adds the mask to
    the scores; hooks see the same tensors as in plain PyTorch). Not ``torchscript=True``: that
    clones tied embeddings instead of sharing them."""
    kwargs = {}
    if torch_dtype is not None:
        # transformers 5 calls it ``dtype``; 4.x ``torch_dtype``
        kwargs["dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"] = torch_dtype
    model = transformers.AutoModelForCausalLM.from_pretrained(name, attn_implementation="eager", **kwargs)
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "use_cache"):
        cfg.use_cache = False
    return model.eval()


def _culprits(message: str):
    return [h for h in _HF_SHAPE_HELPERS if h in message]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m torchsight_export",
                                description="Export a Hugging Face causal LM to a torchsight model directory.")
    p.add_argument("model", help="Hugging Face model id or local path")
    p.add_argument("outdir")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--example-text", default=DEFAULT_EXAMPLE_TEXT, dest="example_text")
    a = p.parse_args(argv)

    if a.model.startswith(("/", "./", "../", "~")) and not os.path.isdir(os.path.expanduser(a.model)):
        # a path, not a hub id: say so now rather than after transformers has asked the hub
        print(f"torchsight export failed: no model folder at {a.model}", file=sys.stderr)
        return 2
    transformers = _import_transformers()
    import torch
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[a.dtype]
    t0 = time.time()
    tokenizer = transformers.AutoTokenizer.from_pretrained(a.model)
    model = _load(transformers, a.model, torch_dtype)
    config = model.config.to_dict() if hasattr(model, "config") else None
    try:
        export_model(model, a.outdir, tokenizer=tokenizer, example_text=a.example_text, dtype=a.dtype,
                     architecture=type(model).__name__, config=config)
    except ExportVerificationError as e:
        msg = str(e)
        named = _culprits(msg)
        if named:
            hint = ("Hugging Face's own mask/position helper " + ", ".join(named) + " baked a shape into the "
                    "trace, so the exported model only works at the example's length or padding. This "
                    f"transformers version ({transformers.__version__}) needs a trace-friendly adapter for "
                    f"{type(model).__name__} in torchsight_export.")
        else:
            hint = ("the traced model does not reproduce the eager one at other lengths or with padding; if "
                    "the tracer warnings above point into transformers, it is one of Hugging Face's mask or "
                    "position helpers (e.g. " + ", ".join(_HF_SHAPE_HELPERS[:4]) + ") baking a shape into "
                    f"the trace for {type(model).__name__} with transformers {transformers.__version__}.")
        print(f"torchsight export failed: {msg}\n\n{hint}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"torchsight export failed: {e}", file=sys.stderr)
        return 2
    print(f"{a.outdir} {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
