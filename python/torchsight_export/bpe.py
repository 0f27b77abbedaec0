"""A small byte-level BPE tokenizer (GPT-2 style), with no dependency beyond the standard library.

It reads and writes Hugging Face ``tokenizer.json`` files whose model is ``BPE`` with a
``ByteLevel`` pre-tokenizer, which is all the exporter needs to turn example text into ids
without the ``tokenizers`` package. (The trainer for test models is torchsight_testing.bpe_train.)
"""
from __future__ import annotations

import json
import unicodedata
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["bytes_to_unicode", "pre_tokenize", "BPETokenizer"]


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    # order: the printable bytes first, then the remapped ones (GPT-2's vocabulary order)
    return {b: table[b] for b in keep + [b for b in range(256) if b not in set(keep)]}


_B2U = bytes_to_unicode()
_U2B = {u: b for b, u in _B2U.items()}

_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _is_letter(c: str) -> bool:
    return unicodedata.category(c).startswith("L")


def _is_number(c: str) -> bool:
    return unicodedata.category(c).startswith("N")


def _is_space(c: str) -> bool:
    return c.isspace()


def _is_other(c: str) -> bool:
    return not (_is_space(c) or _is_letter(c) or _is_number(c))


def pre_tokenize(text: str) -> List[str]:
    r"""Split text like GPT-2's regex (what ``ByteLevel(use_regex=True)`` uses)::

        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

    A hand-written scanner, since Python's ``re`` has no ``\p{..}`` classes.
    """
    out: List[str] = []
    i, n = 0, len(text)
    while i < n:
        end = _match_at(text, i, n)
        out.append(text[i:end])
        i = end
    return out


def _run(text: str, j: int, n: int, pred) -> int:
    while j < n and pred(text[j]):
        j += 1
    return j


def _match_at(text: str, i: int, n: int) -> int:
    for c in _CONTRACTIONS:
        if text.startswith(c, i):
            return i + len(c)
    for pred in (_is_letter, _is_number, _is_other):
        if text[i] == " " and i + 1 < n and pred(text[i + 1]):
            return _run(text, i + 1, n, pred)
        if pred(text[i]):
            return _run(text, i, n, pred)
    # whitespace: \s+(?!\S) then \s+
    j = _run(text, i, n, _is_space)
    if j == n or j - i == 1:
        return j
    return j - 1


def _word_to_unicode(word: str) -> str:
    return "".join(_B2U[b] for b in word.encode("utf-8"))


class BPETokenizer:
    """Encoder/decoder for a byte-level BPE ``tokenizer.json``."""

    def __init__(self, vocab: Dict[str, int], merges: Sequence[Tuple[str, str]],
                 added_tokens: Optional[Dict[str, int]] = None,
                 prefix_ids: Sequence[int] = (), suffix_ids: Sequence[int] = ()):
        self.vocab = dict(vocab)
        self.prefix_ids = list(prefix_ids)  # added by a TemplateProcessing post-processor
        self.suffix_ids = list(suffix_ids)
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.added = dict(added_tokens or {})
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        for t, i in self.added.items():
            self.id_to_token[i] = t
        self._cache: Dict[str, List[str]] = {}

    @classmethod
    def from_file(cls, path: str) -> "BPETokenizer":
        with open(path, "r", encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    @classmethod
    def from_dict(cls, data: dict) -> "BPETokenizer":
        model = data.get("model") or {}
        if model.get("type", "BPE") != "BPE":
            raise ValueError(f"tokenizer model type {model.get('type')!r} is not BPE")
        pre = data.get("pre_tokenizer") or {}
        kinds = [pre.get("type")] + [p.get("type") for p in pre.get("pretokenizers", [])]
        if "ByteLevel" not in kinds:
            raise ValueError("only byte-level BPE tokenizers (ByteLevel pre-tokenizer) are supported "
                             f"by the built-in encoder; got pre_tokenizer {pre.get('type')!r}")
        merges = []
        for m in model.get("merges", []):
            if isinstance(m, str):
                a, b = m.split(" ", 1)
            else:
                a, b = m
            merges.append((a, b))
        added = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
        prefix, suffix = _template_ids(data.get("post_processor"))
        return cls(model["vocab"], merges, added, prefix, suffix)

    def _bpe(self, word: str) -> List[str]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = -1, None
            for k in range(len(parts) - 1):
                r = self.ranks.get((parts[k], parts[k + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = k, r
            if best < 0:
                break
            a, b = parts[best], parts[best + 1]
            merged: List[str] = []
            k = 0
            while k < len(parts):
                if k < len(parts) - 1 and parts[k] == a and parts[k + 1] == b:
                    merged.append(a + b)
                    k += 2
                else:
                    merged.append(parts[k])
                    k += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def _split_added(self, text: str) -> List[Tuple[str, bool]]:
        if not self.added:
            return [(text, False)]
        pieces: List[Tuple[str, bool]] = []
        specials = sorted(self.added, key=len, reverse=True)
        i, start = 0, 0
        while i < len(text):
            hit = next((s for s in specials if text.startswith(s, i)), None)
            if hit is None:
                i += 1
                continue
            if i > start:
                pieces.append((text[start:i], False))
            pieces.append((hit, True))
            i += len(hit)
            start = i
        if start < len(text):
            pieces.append((text[start:], False))
        return pieces

    def tokenize(self, text: str) -> List[str]:
        toks: List[str] = []
        for piece, special in self._split_added(text):
            if special:
                toks.append(piece)
                continue
            for word in pre_tokenize(piece):
                toks.extend(self._bpe(_word_to_unicode(word)))
        return toks

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        ids = list(self.prefix_ids) if add_special_tokens else []
        for t in self.tokenize(text):
            if t in self.added:
                ids.append(self.added[t])
            elif t in self.vocab:
                ids.append(self.vocab[t])
            else:
                raise KeyError(f"token {t!r} is not in the vocabulary")
        if add_special_tokens:
            ids.extend(self.suffix_ids)
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        out: List[str] = []
        buf = bytearray()
        for i in ids:
            tok = self.id_to_token[int(i)]
            if tok in self.added:
                if buf:
                    out.append(buf.decode("utf-8", errors="replace"))
                    buf = bytearray()
                if not skip_special_tokens:
                    out.append(tok)
                continue
            buf.extend(_U2B[c] for c in tok)
        if buf:
            out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


def _template_ids(post) -> Tuple[List[int], List[int]]:
    """Special ids a ``TemplateProcessing`` post-processor puts around a single sequence."""
    if not post:
        return [], []
    if post.get("type") == "Sequence":
        for p in post.get("processors", []):
            pre, suf = _template_ids(p)
            if pre or suf:
                return pre, suf
        return [], []
    if post.get("type") != "TemplateProcessing":
        return [], []
    specials = post.get("special_tokens", {})
    pre: List[int] = []
    suf: List[int] = []
    seen_seq = False
    for item in post.get("single", []):
        if "Sequence" in item:
            seen_seq = True
        elif "SpecialToken" in item:
            ids = specials.get(item["SpecialToken"]["id"], {}).get("ids", [])
            (suf if seen_seq else pre).extend(ids)
    return pre, suf
