"""Loaders for MATH-500, AIME 2024, AMC 2023 and Hendrycks MATH (hub ids or local files).

Golds: MATH-style LaTeX from ``answer``, else the last ``\\boxed{}`` of ``solution``; AIME
answers are integers written without zero padding (``"025"`` -> ``"25"``); AMC answers are JSON
floats written as the shortest exact decimal (``27.0`` -> ``"27"``).  The raw value is kept in
``metadata["raw_answer"]`` when it differs.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, Callable

from ssb.answers import last_boxed
from ssb.dataio import BadField, Row, load_problems, text_field
from ssb.errors import SsbError
from ssb.records import Problem
from ssb.types import DatasetLoader, LoadResult

FILTER_KEYS = ("subject", "level")


def _question(row: Row) -> str:
    return text_field(row, "problem", alternatives=("question",)).strip()


def math_gold(row: Row) -> str:
    """``answer`` if present and non-empty, else the last ``\\boxed{}`` of ``solution``."""
    answer = row.data.get("answer")
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    if answer is not None and not isinstance(answer, str):
        raise BadField("answer", f"field 'answer' must be a string, got {type(answer).__name__}")
    solution = row.data.get("solution")
    if not isinstance(solution, str) or not solution.strip():
        raise BadField("answer", "no 'answer' and no 'solution' to take the boxed answer from")
    boxed = last_boxed(solution)
    if not boxed:
        raise BadField("solution", "field 'solution' has no \\boxed{} final answer")
    return boxed


def integer_gold(row: Row) -> str:
    """AIME-style integer answer: ``"025"`` or ``25`` -> ``"25"``."""
    value = row.data.get("answer")
    if value is None:
        raise BadField("answer", "missing field 'answer'")
    if isinstance(value, bool):
        raise BadField("answer", "field 'answer' must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise BadField("answer", f"field 'answer' must be an integer, got {value!r}")
        return str(int(value))
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise BadField("answer", f"field 'answer' must be an integer, got {text!r}")
    return str(int(text))


def number_gold(row: Row) -> str:
    """AMC-style numeric answer (JSON float or string): ``27.0`` -> ``"27"``, ``0.5`` -> ``"0.5"``."""
    value = row.data.get("answer")
    if value is None:
        raise BadField("answer", "missing field 'answer'")
    if isinstance(value, bool):
        raise BadField("answer", "field 'answer' must be a number")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise BadField("answer", f"field 'answer' is not finite: {value!r}")
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if d == d.to_integral_value():
            return str(int(d))
        return format(d.normalize(), "f")
    text = str(value).strip()
    if not text:
        raise BadField("answer", "field 'answer' is empty")
    return text  # a LaTeX answer in a string column: keep it


def _level(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = re.search(r"\d+", value)  # Hendrycks writes "Level 3"
        return int(m.group(0)) if m else None
    return None


def _subject(data: dict) -> str | None:
    value = data.get("subject", data.get("type"))
    return value if isinstance(value, str) else None


def _filter(filters: dict[str, Any] | None) -> Callable[[Row], bool] | None:
    if not filters:
        return None
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        raise SsbError(f"unknown filter(s) {sorted(unknown)}; this dataset filters on "
                       f"{', '.join(FILTER_KEYS)}")
    subjects = _as_set(filters.get("subject"), str.lower)
    levels = _as_set(filters.get("level"), lambda v: int(str(v).strip()))

    def keep(row: Row) -> bool:
        if subjects is not None:
            subject = _subject(row.data)
            if subject is None or subject.lower() not in subjects:
                return False
        if levels is not None and _level(row.data.get("level")) not in levels:
            return False
        return True

    return keep


def _as_set(value: Any, cast) -> set | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple, set)) else str(value).split(",")
    try:
        return {cast(v) if not isinstance(v, str) else cast(v.strip()) for v in items}
    except ValueError as exc:
        raise SsbError(f"bad filter value {value!r}: {exc}") from None


def _make_loader(name: str, hub_id: str, gold: Callable[[Row], str], *,
                 hub_config: str | None = None, hub_split: dict[str, str] | None = None,
                 splits: tuple[str, ...] = ("test",), description: str = "") -> DatasetLoader:
    def load(source: str | None = None, split: str = "test", skip_bad: bool = False,
             filters: dict[str, Any] | None = None) -> LoadResult:
        real_split = split
        if source is None and hub_split:
            real_split = hub_split.get(split, split)  # e.g. a hub repo that only has "train"

        def normalize(row: Row) -> Problem:
            question = _question(row)
            answer = gold(row)
            meta: dict[str, Any] = {}
            for key in ("subject", "type", "level", "unique_id", "url", "id"):
                if key in row.data and row.data[key] is not None:
                    meta[key] = row.data[key]
            raw = row.data.get("answer")
            if raw is not None and str(raw) != answer:
                meta["raw_answer"] = raw
            if isinstance(row.data.get("solution"), str):
                meta["solution"] = row.data["solution"]
            uid = row.data.get("unique_id")
            pid = f"{name}/{uid}" if isinstance(uid, str) and uid else f"{name}/{split}/{row.index}"
            return Problem(id=pid, question=question, gold=answer, dataset=name, metadata=meta)

        return load_problems(source or hub_id, real_split, normalize, skip_bad=skip_bad,
                             hub_config=hub_config, keep=_filter(filters))

    return DatasetLoader(name=name, domain="math", load=load, default_source=hub_id,
                         splits=splits, description=description)


LOADERS = [
    _make_loader("math500", "HuggingFaceH4/MATH-500", math_gold,
                 description="MATH-500 (PRM800K test subset); filters: subject, level"),
    _make_loader("aime24", "HuggingFaceH4/aime_2024", integer_gold, hub_split={"test": "train"},
                 description="AIME 2024 I+II (30 problems), integer answers"),
    _make_loader("amc23", "math-ai/amc23", number_gold,
                 description="AMC 12 2023 (40 problems), numeric answers"),
    _make_loader("math", "DigitalLearningGmbH/MATH-lighteval", math_gold,
                 splits=("train", "test"),
                 description="Hendrycks MATH; filters: subject (e.g. Algebra), level (1-5)"),
]
