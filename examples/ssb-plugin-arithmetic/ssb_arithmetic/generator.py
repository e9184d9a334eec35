"""Seeded generator of multi-step arithmetic word problems with integer answers.

A problem is a starting amount followed by 2-4 operations, each a sentence.  Every
intermediate value stays a positive integer (divisions are exact, subtractions never go
below one), so the answer is a whole number.  The same ``seed`` always gives the same problems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ["Maya", "Omar", "Lena", "Tariq", "Sofia", "Jonas", "Priya", "Diego", "Hana", "Felix"]
THINGS = [("marbles", "bag"), ("stickers", "sheet"), ("apples", "crate"), ("pencils", "box"),
          ("cards", "pack"), ("beads", "jar"), ("stamps", "album page"), ("shells", "bucket")]


@dataclass(frozen=True)
class Generated:
    text: str
    answer: int
    steps: int


def _step(rng: random.Random, value: int, who: str, things: str, unit: str) -> tuple[str, int]:
    """One operation on ``value``: (sentence, new value)."""
    kinds = ["buy", "give", "times", "share", "add_groups"]
    while True:
        kind = rng.choice(kinds)
        if kind == "buy":
            packs, each = rng.randint(3, 9), rng.randint(12, 48)
            return (f"{who} then gets {packs} {unit}s of {things} with {each} {things} in each "
                    f"{unit}.", value + packs * each)
        if kind == "give" and value > 10:
            lost = rng.randint(2, value - 1 if value < 60 else value // 2 + 5)
            friend = rng.choice([n for n in NAMES if n != who])
            return f"{who} gives {lost} {things} to {friend}.", value - lost
        if kind == "times" and value <= 400:
            k = rng.choice([2, 3, 4, 5])
            word = {2: "doubles", 3: "triples", 4: "quadruples", 5: "makes five times"}[k]
            tail = " as many" if k == 5 else ""
            return f"Later, {who} {word}{tail} the number of {things}.", value * k
        if kind == "share":
            divisors = [d for d in range(2, 10) if value % d == 0 and value // d >= 2]
            if divisors:
                d = rng.choice(divisors)
                return (f"{who} divides all the {things} into {d} equal groups and keeps "
                        f"just one group.", value // d)
        if kind == "add_groups" and value <= 300:
            rows, per = rng.randint(4, 12), rng.randint(6, 15)
            return (f"A neighbour brings {rows} rows of {things} with {per} in each row, and "
                    f"{who} adds them all.", value + rows * per)


def generate(n: int, seed: int) -> list[Generated]:
    """``n`` problems from ``seed`` (deterministic)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        who = rng.choice(NAMES)
        things, unit = rng.choice(THINGS)
        value = rng.randint(15, 90)
        sentences = [f"{who} has {value} {things}."]
        steps = rng.randint(2, 4)
        for _ in range(steps):
            sentence, value = _step(rng, value, who, things, unit)
            sentences.append(sentence)
        sentences.append(f"How many {things} does {who} have now?")
        out.append(Generated(text=" ".join(sentences), answer=value, steps=steps))
    return out
