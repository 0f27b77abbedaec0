"""Tiny random-init Hugging Face models of each supported family, for tests with no hub access.

    python -m torchsight_testing.hf_fixtures --out DIR [--family gpt2 ...]

Each DIR/<family> holds ``save_pretrained`` output: a seeded ``from_config`` model (weights scaled
up so that interventions move the logits visibly) and a byte-level BPE tokenizer trained with
``tokenizers`` on the built-in corpus. The configs exercise what each family is known for: tied
embeddings, grouped-query attention, sliding windows shorter than the test prompts, partial rotary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from .examples import build_corpus

VOCAB = 320
SPECIAL = "<|endoftext|>"
SEED = 0
INIT_STD = 0.15  # from_config's default (0.02) leaves tiny logits that barely move under patches

_COMMON = dict(vocab_size=VOCAB, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, pad_token_id=VOCAB - 1)

CONFIGS = {
    "gpt2": ("GPT2Config", dict(n_positions=128, n_embd=32, n_layer=2, n_head=4, tie_word_embeddings=True)),
    "llama": ("LlamaConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)),
    "mistral": ("MistralConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=128, sliding_window=5)),
    "qwen2": ("Qwen2Config", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=1, max_position_embeddings=128, tie_word_embeddings=True,
                                  use_sliding_window=True, sliding_window=5, max_window_layers=1)),
    "gemma": ("GemmaConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=1, head_dim=8, max_position_embeddings=128)),
    "gpt_neox": ("GPTNeoXConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, rotary_pct=0.25, max_position_embeddings=128,
                                       use_parallel_residual=True, tie_word_embeddings=False)),
    "phi": ("PhiConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              partial_rotary_factor=0.5, max_position_embeddings=128)),
}


def make_tokenizer():
    """A byte-level BPE trained with ``tokenizers``, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 1, special_tokens=[], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(build_corpus().splitlines(), trainer)
    tok.add_special_tokens([SPECIAL])
    if tok.get_vocab_size() != VOCAB or tok.token_to_id(SPECIAL) != VOCAB - 1:
        raise RuntimeError(f"trained vocabulary {tok.get_vocab_size()} != {VOCAB}")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL)


def make_model(family: str):
    import transformers
    cls_name, kw = CONFIGS[family]
    cfg = getattr(transformers, cls_name)(**_COMMON, **kw)
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(SEED + 1)
        for name, p in model.named_parameters():
            if p.dim() >= 2:  # matrices (tied ones once: named_parameters dedups)
                p.copy_(torch.randn(p.shape, generator=gen) * INIT_STD)
            elif "norm" in name or "ln" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen) if "weight" in name else
                        0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
        # the end-of-text token is never the greedy choice, so that generations run their full
        # length and compare many tokens (stops are tested on the example models)
        head = model.get_output_embeddings()
        head.weight[VOCAB - 1] = 0
        if getattr(head, "bias", None) is not None:
            head.bias[VOCAB - 1] = -100.0
    return model.eval()


def build(out: str, families) -> None:
    tok = make_tokenizer()
    for fam in families:
        d = os.path.join(out, fam)
        os.makedirs(d, exist_ok=True)
        make_model(fam).save_pretrained(d)
        tok.save_pretrained(d)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m torchsight_testing.hf_fixtures")
    p.add_argument("--out", required=True)
    p.add_argument("--family", action="append", choices=sorted(CONFIGS))
    a = p.parse_args(argv)
    build(a.out, a.family or sorted(CONFIGS))
    print(json.dumps(sorted(a.family or CONFIGS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
