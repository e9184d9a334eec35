"""Seeded generator of multi-step arithmetic word problems with integer answers.

A problem is a starting amount followed by 2-3 operations, each a sentence.  Every
intermediate value stays a positive integer (divisions are exact, subtractions never go
below one), so the answer is a whole number.  The same ``seed`` always gives the same problems.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Iterator

NAMES = ["Maya", "Omar", "Lena", "Tariq", "Sofia", "Jonas", "Priya", "Diego", "Hana", "Felix"]
THINGS = [("marbles", "bag"), ("stickers", "sheet"), ("apples", "crate"), ("pencils", "box"),
          ("cards", "pack"), ("beads", "jar"), ("stamps", "album page"), ("shells", "bucket")]


@dataclass(frozen=True)
class Generated:
    text: str
    answer: int
    steps: int


def _step(rng: random.Random, value: int, who: str, things: str, unit: str) -> tuple[str, int]:
    """One operation on ``value``: (sentence, new value).

    Numbers stay small (single-digit factors, two-digit amounts): the set is meant to be at the
    edge of what a 0.5B instruct model can do, so rollouts come out both right and wrong.
    """
    kinds = ["buy", "give", "times", "share", "find"]
    while True:
        kind = rng.choice(kinds)
        if kind == "buy":
            packs, each = rng.randint(2, 6), rng.randint(3, 9)
            return (f"{who} then gets {packs} {unit}s of {things} with {each} {things} in each "
                    f"{unit}.", value + packs * each)
        if kind == "give" and value > 6:
            lost = rng.randint(2, min(value - 2, 25))
            friend = rng.choice([n for n in NAMES if n != who])
            return f"{who} gives {lost} {things} to {friend}.", value - lost
        if kind == "times" and value <= 60:
            k = rng.choice([2, 3])
            word = {2: "doubles", 3: "triples"}[k]
            return f"Later, {who} {word} the number of {things}.", value * k
        if kind == "share":
            divisors = [d for d in range(2, 6) if value % d == 0 and value // d >= 2]
            if divisors:
                d = rng.choice(divisors)
                return (f"{who} divides all the {things} into {d} equal groups and keeps "
                        f"just one group.", value // d)
        if kind == "find":
            found = rng.randint(3, 20)
            return f"{who} finds {found} more {things}.", value + found


def generate(n: int, seed: int) -> list[Generated]:
    """``n`` problems from ``seed`` (deterministic)."""
    return list(itertools.islice(iter_generated(seed), n))


def iter_generated(seed: int) -> Iterator[Generated]:
    """The problems of ``seed``, one at a time, without end: the first ``n`` are exactly
    ``generate(n, seed)``, so a caller that needs four of a billion makes four."""
    rng = random.Random(seed)
    while True:
        who = rng.choice(NAMES)
        things, unit = rng.choice(THINGS)
        value = rng.randint(8, 40)
        sentences = [f"{who} has {value} {things}."]
        steps = rng.randint(2, 3)
        for _ in range(steps):
            sentence, value = _step(rng, value, who, things, unit)
            sentences.append(sentence)
        sentences.append(f"How many {things} does {who} have now?")
        yield Generated(text=" ".join(sentences), answer=value, steps=steps)
