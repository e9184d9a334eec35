"""Which two rollouts the hinted teacher sees, and the tally of curation outcomes: pure functions
of the verified rollouts, the run seed and the problem id (no I/O, no model).

Selection rule (:func:`select_pair`, deterministic and independent of batching)
------------------------------------------------------------------------------
* A problem is ``all_correct`` when no rollout is wrong and ``all_wrong`` when none is correct;
  both are skipped.  It is ``few_correct`` (skipped) when fewer than ``min_correct`` rollouts are
  correct (``--min-correct``, else the domain verifier's ``min_correct`` attribute, else 1): a
  multiple-choice domain asks for 2, since one right rollout of four is often a lucky guess.
  A rollout is *wrong* when its verdict is not correct, including rollouts with no extractable
  answer and verdicts that errored (e.g. a verifier timeout).
* Randomness comes from ``random.Random`` seeded with sha256("ssb-curate", seed, problem id), so a
  problem's choice depends only on the run seed and its own id, never on batch order or resume.
* The correct example is a seeded-random choice among the correct rollouts that finished
  (``finish_reason == "stop"``), or among all correct ones when none finished.
* The wrong example is a rollout of the most common wrong *answer*.  Answers are counted by
  :func:`answer_key` (whitespace removed, surrounding ``$`` and a trailing period dropped, digit
  group commas removed, plain decimals canonicalized so ``96.00`` == ``96``).  Rollouts whose
  answer cannot be extracted (``None`` or empty) are candidates only when no wrong rollout has an
  extractable answer.  Ties between equally common answers are broken by the seeded RNG (over
  the keys in sorted order); among rollouts sharing the chosen answer, one is picked by the RNG.
  The RNG draws in that fixed order: correct rollout, answer tie, wrong rollout.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Sequence

from ssb.records import Completion, Rollout, Verdict

KEPT = "kept"
ALL_CORRECT = "all_correct"
ALL_WRONG = "all_wrong"
TEACHER_WRONG = "teacher_wrong"
ERROR = "error"
SKIP_REASONS = (ALL_CORRECT, ALL_WRONG, TEACHER_WRONG, ERROR)
FEW_CORRECT = "few_correct"  # only with min_correct > 1; in stats["skipped"] only when it occurs


# -- pure selection logic -------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_DIGIT_GROUP_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def answer_key(extracted: str | None) -> str | None:
    """The key under which wrong answers are counted; ``None`` for no extractable answer.

    Deliberately textual (no symbolic math) so counting is fast and predictable: answers that
    differ only in whitespace, surrounding ``$``, a trailing period, thousands separators or
    trailing decimal zeros count as the same answer.
    """
    if extracted is None:
        return None
    key = _WS.sub("", extracted)
    key = key.strip("$").rstrip(".")
    key = _DIGIT_GROUP_COMMA.sub("", key)
    if not key:
        return None
    try:
        number = Decimal(key)
    except InvalidOperation:
        return key
    if not number.is_finite():
        return key
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def problem_rng(seed: int, problem_id: str) -> random.Random:
    """An RNG that depends only on the run seed and the problem id."""
    digest = hashlib.sha256(f"ssb-curate\x00{seed}\x00{problem_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class Selection:
    """What :func:`select_pair` decided for one problem."""

    status: str  # "selected", ALL_CORRECT or ALL_WRONG
    correct_index: int | None = None
    wrong_index: int | None = None
    wrong_answer: str | None = None  # answer_key of the chosen wrong rollout (None: no answer)
    wrong_answer_count: int = 0
    answer_counts: list[dict[str, Any]] = field(default_factory=list)  # wrong answers, by count


def select_pair(rollouts: Sequence[Rollout], seed: int, problem_id: str,
                min_correct: int = 1) -> Selection:
    """Choose the correct and the wrong example for one problem (rule: see the module docstring)."""
    correct = [i for i, r in enumerate(rollouts) if r.correct]
    wrong = [i for i, r in enumerate(rollouts) if not r.correct]
    if not correct:
        return Selection(status=ALL_WRONG, answer_counts=_wrong_counts(rollouts, wrong))
    if not wrong:
        return Selection(status=ALL_CORRECT)
    if len(correct) < min_correct:
        return Selection(status=FEW_CORRECT, answer_counts=_wrong_counts(rollouts, wrong))
    rng = problem_rng(seed, problem_id)
    # A truncated rollout may be judged correct by a last-number fallback: prefer finished ones.
    finished = [i for i in correct if rollouts[i].finish_reason == "stop"]
    correct_index = rng.choice(finished or correct)

    by_answer: dict[str, list[int]] = {}
    for i in wrong:
        key = answer_key(rollouts[i].extracted)
        if key is not None:
            by_answer.setdefault(key, []).append(i)
    if by_answer:
        top = max(len(v) for v in by_answer.values())
        tied = sorted(k for k, v in by_answer.items() if len(v) == top)
        wrong_answer: str | None = tied[0] if len(tied) == 1 else rng.choice(tied)
        candidates = by_answer[wrong_answer]
    else:  # no wrong rollout has an answer: fall back to the unanswered ones
        wrong_answer = None
        candidates = wrong
    wrong_index = candidates[0] if len(candidates) == 1 else rng.choice(candidates)
    return Selection(
        status="selected",
        correct_index=correct_index,
        wrong_index=wrong_index,
        wrong_answer=wrong_answer,
        wrong_answer_count=len(candidates),
        answer_counts=_wrong_counts(rollouts, wrong),
    )


def _wrong_counts(rollouts: Sequence[Rollout], wrong: Iterable[int]) -> list[dict[str, Any]]:
    counts = Counter(answer_key(rollouts[i].extracted) for i in wrong)
    return [{"answer": k, "count": c}
            for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))]


def make_rollout(completion: Completion, verdict: Verdict) -> Rollout:
    return Rollout(text=completion.text, num_tokens=int(completion.num_tokens),
                   finish_reason=completion.finish_reason, extracted=verdict.extracted,
                   correct=bool(verdict.correct) and verdict.error is None,
                   detail=verdict.detail)


# -- stats ----------------------------------------------------------------------------------------

def latest_outcomes(entries: Iterable[dict]) -> dict[str, dict]:
    """Problem id -> its last journal entry (insertion order = first time the id was seen)."""
    latest: dict[str, dict] = {}
    for entry in entries:
        latest[entry["id"]] = entry
    return latest


def summarize(outcomes: Iterable[dict]) -> dict[str, Any]:
    """Counts and means over final per-problem outcomes (journal entries)."""
    outcomes = list(outcomes)
    skipped = {_skip_label(reason): 0 for reason in SKIP_REASONS}
    kept = 0
    rollout_tokens: list[int] = []
    rollouts_correct = 0
    teacher_tokens: list[int] = []
    solution_tokens: list[int] = []
    for e in outcomes:
        status = e["status"]
        if status == KEPT:
            kept += 1
            solution_tokens.append(e["teacher_tokens"])
        else:
            skipped[_skip_label(status)] = skipped.get(_skip_label(status), 0) + 1
        rollout_tokens.extend(e.get("rollout_tokens") or [])
        rollouts_correct += sum(bool(c) for c in e.get("rollout_correct") or [])
        if e.get("teacher_tokens") is not None:
            teacher_tokens.append(e["teacher_tokens"])
    seen = len(outcomes)
    teacher_attempts = len(teacher_tokens)
    return {
        "problems_seen": seen,
        "kept": kept,
        "skipped": skipped,
        "keep_rate": ratio(kept, seen),
        "rollouts": len(rollout_tokens),
        "rollouts_correct": rollouts_correct,
        "rollout_accuracy": ratio(rollouts_correct, len(rollout_tokens)),
        "teacher_attempts": teacher_attempts,
        "teacher_accuracy": ratio(kept, teacher_attempts),
        "mean_rollout_tokens": _mean(rollout_tokens),
        "mean_teacher_tokens": _mean(teacher_tokens),
        "mean_solution_tokens": _mean(solution_tokens),
    }


def _skip_label(status: str) -> str:
    return "errors" if status == ERROR else status  # the key in stats["skipped"]


def ratio(a: float, b: float) -> float | None:
    """a / b to 6 places; None when b is 0."""
    return round(a / b, 6) if b else None


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None
