"""The prompts and word splits on which the phenomena are measured: by evaluate.py in eager PyTorch,
and (the same lists, printed as JSON by `python -m training.probes`) by tests/tiny-facts.test.ts.
"""
from __future__ import annotations

import json
import os
import sys
from typing import List

from .corpus import ANTONYM, ANTONYM_PAIRS, LANDMARKS, NEGATIVE, POSITIVE, task_prompt

# function vectors: built from prompts over the first pairs' words, measured on the others' words
BUILD_WORDS: List[str] = [w for pair in ANTONYM_PAIRS[:30] for w in pair]
EVAL_WORDS: List[str] = [w for pair in ANTONYM_PAIRS[30:] for w in pair]
SHOTS = 5

PATCH_PAIRS = [("The Eiffel Tower", "The Colosseum"), ("Big Ben", "The Kremlin"), ("The Acropolis", "The Prado"),
               ("The Taj Mahal", "The CN Tower")]

STEER_PROMPT = "The food was"
STEER_POSITIVE = ["This restaurant is wonderful. The food was delicious and the service was friendly.",
                  "The food was amazing. The service was perfect and the dessert was lovely.",
                  "What a fantastic place. The food was fresh and the staff were great."]
STEER_NEGATIVE = ["This restaurant is terrible. The food was bland and the service was rude.",
                  "The food was awful. The service was slow and the dessert was stale.",
                  "What a horrible place. The food was disgusting and the staff were boring."]
STEER_SCALES = [1, 2, 4]


def fact_prompt(landmark: str) -> str:
    return f"{landmark} is in the city of"


def zero_shot(word: str) -> str:
    return f"{word}:"


def _demos(words: List[str], i: int) -> List[str]:
    # SHOTS other words of the list, spread over it (offsets 1, 1+k, 1+2k, ... never the query)
    step = len(words) // SHOTS
    return [words[(i + 1 + k * step) % len(words)] for k in range(SHOTS)]


def icl_prompt(i: int, words: List[str] = EVAL_WORDS) -> str:
    """Five antonym demonstrations then words[i] as the query."""
    return task_prompt("antonym", _demos(words, i), words[i])


def fv_build_prompts() -> List[str]:
    return [icl_prompt(i, BUILD_WORDS) for i in range(len(BUILD_WORDS))]


def load_tokenizer(weights_dir: str):
    """encode(text) -> ids, with .decode(id) -> text: `tokenizers` where installed, else the exporter's BPE."""
    path = os.path.join(weights_dir, "tokenizer.json")
    try:
        from tokenizers import Tokenizer
        t = Tokenizer.from_file(path)

        def encode(text):
            return t.encode(text).ids
        encode.decode = lambda i: t.decode([i])
    except ImportError:
        from torchsight_export.bpe import BPETokenizer
        b = BPETokenizer.from_file(path)

        def encode(text):
            return b.encode(text)
        encode.decode = lambda i: b.decode([i])
    return encode


def as_json() -> dict:
    return {"landmarks": LANDMARKS, "antonym": ANTONYM, "buildWords": BUILD_WORDS, "evalWords": EVAL_WORDS,
            "icl": [icl_prompt(i) for i in range(len(EVAL_WORDS))], "zeroShot": [zero_shot(w) for w in EVAL_WORDS],
            "fvBuild": fv_build_prompts(), "patchPairs": PATCH_PAIRS, "steerPrompt": STEER_PROMPT,
            "steerPositive": STEER_POSITIVE, "steerNegative": STEER_NEGATIVE, "positive": POSITIVE,
            "negative": NEGATIVE}


if __name__ == "__main__":
    json.dump(as_json(), sys.stdout)
    sys.exit(0)
