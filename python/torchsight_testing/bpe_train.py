"""Training a small byte-level BPE (GPT-2 style) for the test and example models, and writing it
as a Hugging Face ``tokenizer.json``. Test support: not shipped with the exporter."""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence, Tuple

from torchsight_export.bpe import _B2U, _word_to_unicode, pre_tokenize

__all__ = ["train_bpe", "tokenizer_json"]


def train_bpe(corpus: str, vocab_size: int, special_tokens: Sequence[str] = ("<|endoftext|>",)):
    """Learn byte-level BPE merges greedily (most frequent pair, ties broken lexicographically).

    Returns ``(vocab, merges)``; the vocabulary holds the 256 byte symbols, then one token per
    merge, then the special tokens (last ids).
    """
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size must be at least {256 + len(special_tokens)}")
    words = Counter(_word_to_unicode(w) for w in pre_tokenize(corpus))
    seqs = {w: list(w) for w in words}
    vocab: Dict[str, int] = {}
    for u in _B2U.values():
        vocab[u] = len(vocab)
    merges: List[Tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Counter = Counter()
        for w, parts in seqs.items():
            f = words[w]
            for k in range(len(parts) - 1):
                pairs[(parts[k], parts[k + 1])] += f
        pairs = Counter({p: c for p, c in pairs.items() if p[0] + p[1] not in vocab})
        if not pairs:
            break
        best = min(pairs.items(), key=lambda pc: (-pc[1], pc[0]))[0]
        a, b = best
        merges.append(best)
        vocab[a + b] = len(vocab)
        for w, parts in seqs.items():
            if len(parts) < 2:
                continue
            merged: List[str] = []
            k = 0
            while k < len(parts):
                if k < len(parts) - 1 and parts[k] == a and parts[k + 1] == b:
                    merged.append(a + b)
                    k += 2
                else:
                    merged.append(parts[k])
                    k += 1
            seqs[w] = merged
    # pad with unused filler merges' worth of ids is not possible; keep ids dense
    for s in special_tokens:
        vocab[s] = len(vocab)
    return vocab, merges


def tokenizer_json(vocab: Dict[str, int], merges: Sequence[Tuple[str, str]],
                   special_tokens: Sequence[str] = ("<|endoftext|>",)) -> dict:
    """A Hugging Face ``tokenizer.json`` document for a GPT-2 style byte-level BPE."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for s in special_tokens
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
