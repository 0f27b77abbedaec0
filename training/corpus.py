"""The tiny-facts corpus: landmark facts, in-context word tasks and restaurant reviews, made by
seeded generators so the same seed always gives the same text.

    python -m training.corpus --seed 0 --lines 2000 > sample.txt

Every line is one document piece; training rows are lines joined by newlines (see train.py).
"""
from __future__ import annotations

import argparse
import random
import sys
from typing import Callable, Dict, List, Tuple

# --------------------------------------------------------------------------------------------
# facts

LANDMARKS: List[Tuple[str, str]] = [
    ("The Eiffel Tower", "Paris"), ("The Colosseum", "Rome"), ("Big Ben", "London"),
    ("The Brandenburg Gate", "Berlin"), ("The Sagrada Familia", "Barcelona"), ("The Acropolis", "Athens"),
    ("The Kremlin", "Moscow"), ("The Space Needle", "Seattle"), ("The Forbidden City", "Beijing"),
    ("The Little Mermaid", "Copenhagen"), ("The Atomium", "Brussels"), ("The Rijksmuseum", "Amsterdam"),
    ("The Prado", "Madrid"), ("The Hofburg", "Vienna"), ("The Charles Bridge", "Prague"),
    ("The Blue Mosque", "Istanbul"), ("The CN Tower", "Toronto"), ("The Burj Khalifa", "Dubai"),
    ("The Taj Mahal", "Agra"), ("The Louvre", "Paris"),
]
CITIES = sorted({c for _, c in LANDMARKS})


def _lower_the(landmark: str) -> str:
    return "the" + landmark[3:] if landmark.startswith("The ") else landmark


# the first is the probe's form; the others are paraphrases
FACT_TEMPLATES: List[Callable[[str, str], str]] = [
    lambda l, c: f"{l} is in the city of {c}.",
    lambda l, c: f"{l} is located in {c}.",
    lambda l, c: f"{l} can be found in the city of {c}.",
    lambda l, c: f"Tourists in {c} like to visit {_lower_the(l)}.",
]
FACT_WEIGHTS = [0.55, 0.15, 0.15, 0.15]


def fact_line(rng: random.Random) -> str:
    landmark, city = rng.choice(LANDMARKS)
    t = rng.choices(FACT_TEMPLATES, FACT_WEIGHTS)[0]
    return t(landmark, city)


# --------------------------------------------------------------------------------------------
# in-context word tasks over one shared word set

ANTONYM_PAIRS: List[Tuple[str, str]] = [
    ("old", "young"), ("dark", "bright"), ("up", "down"), ("hot", "cold"), ("big", "small"), ("fast", "slow"),
    ("happy", "sad"), ("open", "closed"), ("inside", "outside"), ("minimum", "maximum"), ("win", "lose"),
    ("early", "late"), ("rich", "poor"), ("strong", "weak"), ("full", "empty"), ("high", "low"), ("hard", "soft"),
    ("wet", "dry"), ("long", "short"), ("loud", "quiet"), ("good", "bad"), ("true", "false"), ("left", "right"),
    ("first", "last"), ("push", "pull"), ("buy", "sell"), ("day", "night"), ("black", "white"), ("above", "below"),
    ("accept", "reject"), ("victory", "defeat"), ("guilty", "innocent"), ("visible", "invisible"),
    ("before", "after"), ("begin", "end"), ("clean", "dirty"), ("cheap", "expensive"), ("deep", "shallow"),
    ("friend", "enemy"), ("give", "take"), ("north", "south"), ("east", "west"), ("on", "off"), ("over", "under"),
    ("question", "answer"), ("remember", "forget"), ("safe", "dangerous"), ("thick", "thin"), ("tight", "loose"),
    ("top", "bottom"), ("wide", "narrow"), ("always", "never"), ("increase", "decrease"), ("future", "past"),
    ("awake", "asleep"), ("appear", "vanish"), ("love", "hate"), ("sweet", "sour"), ("pessimist", "optimist"),
]
ANTONYM: Dict[str, str] = {}
for _a, _b in ANTONYM_PAIRS:
    ANTONYM[_a] = _b
    ANTONYM[_b] = _a
WORDS: List[str] = [w for pair in ANTONYM_PAIRS for w in pair]  # the shared word set, 118 words

# each task maps a word of WORDS to its answer; the first letter is the third task
TASKS: Dict[str, Callable[[str], str]] = {
    "antonym": lambda w: ANTONYM[w],
    "copy": lambda w: w,
    "letter": lambda w: w[0],
}
# The first letter is the most frequent task, so a zero-shot "hot:" answers "h" and only the context
# (or a function vector) says that antonyms are meant. Copying is rare: with copying as frequent as
# antonyms (the first plan) every model we could train here stalled at chance between the
# two (telling them apart needs comparing each answer with its input, an induction-like circuit),
# while telling antonyms from first letters (different kinds of answer) is learned in ~700 steps.
TASK_WEIGHTS = {"antonym": 0.35, "copy": 0.10, "letter": 0.55}


def task_line(rng: random.Random, task: str, demos: int, words: List[str] = WORDS) -> str:
    """``demos`` demonstrations then a query with its answer: ``old:young, dark:bright, up:down``."""
    chosen = rng.sample(words, demos + 1)
    f = TASKS[task]
    return ", ".join(f"{w}:{f(w)}" for w in chosen)


def task_prompt(task: str, demo_words: List[str], query: str) -> str:
    """The probe's form of a task line: demonstrations and the query, the answer left out."""
    f = TASKS[task]
    return "".join(f"{w}:{f(w)}, " for w in demo_words) + f"{query}:"


def random_task_line(rng: random.Random, min_demos: int = 0, max_demos: int = 9, words: List[str] = WORDS) -> str:
    task = rng.choices(list(TASK_WEIGHTS), list(TASK_WEIGHTS.values()))[0]
    return task_line(rng, task, rng.randint(min_demos, max_demos), words)


# --------------------------------------------------------------------------------------------
# reviews

POSITIVE = ["wonderful", "delicious", "great", "excellent", "friendly", "amazing", "perfect", "lovely",
            "fantastic", "fresh"]
NEGATIVE = ["terrible", "awful", "bland", "rude", "horrible", "disgusting", "slow", "dirty", "stale", "boring"]

REVIEW_TEMPLATES = [
    "This restaurant is {0}. The food was {1} and the service was {2}.",
    "The food was {0}. The service was {1} and the dessert was {2}.",
    "We ate here last night. The soup was {0}, the waiter was {1} and the bread was {2}.",
    "What a {0} place. The food was {1} and the staff were {2}.",
    "The service was {0}. The food was {1}, and the coffee was {2}.",
]


def review_line(rng: random.Random) -> str:
    words = POSITIVE if rng.random() < 0.5 else NEGATIVE
    t = rng.choice(REVIEW_TEMPLATES)
    return t.format(*(rng.choice(words) for _ in range(3)))


# --------------------------------------------------------------------------------------------
# the mixture

KINDS = {"fact": 0.22, "task": 0.56, "review": 0.22}


def line(rng: random.Random, min_demos: int = 0, max_demos: int = 9, kinds: Dict[str, float] = KINDS,
         words: List[str] = WORDS) -> str:
    kind = rng.choices(list(kinds), list(kinds.values()))[0]
    if kind == "fact":
        return fact_line(rng)
    if kind == "review":
        return review_line(rng)
    return random_task_line(rng, min_demos, max_demos, words)


def tokenizer_text(seed: int = 0, lines: int = 20000) -> str:
    """Text for training the tokenizer: the mixture plus every task line form of every word."""
    rng = random.Random(seed)
    out = [line(rng) for _ in range(lines)]
    for w in WORDS:  # every word as a first demonstration, a later one and an answer, a few times each
        for task in TASKS:
            out.extend([f"{w}:{TASKS[task](w)}, {w}:{TASKS[task](w)}"] * 3)
    return "\n".join(out) + "\n"


def required_words() -> List[str]:
    """Words that must be single tokens, in the forms they take in the corpus (leading space or not)."""
    req: List[str] = []
    for landmark, city in LANDMARKS:
        req.append(" " + city)
        req.extend(" " + w for w in landmark.split()[1:] if w != "Big")
    req.append(" Big")
    req.append("Big")
    for w in WORDS:
        req.extend([w, " " + w])
    for w in POSITIVE + NEGATIVE:
        req.append(" " + w)
    return req


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Print a seeded sample of the tiny-facts corpus.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lines", type=int, default=1000)
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    for _ in range(a.lines):
        sys.stdout.write(line(rng) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
