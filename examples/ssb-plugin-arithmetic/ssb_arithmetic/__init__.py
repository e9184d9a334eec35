"""An example ssb plugin: multi-step arithmetic word problems, generated from a seed.

It registers one of each domain hook -- a dataset, a verifier and a prompt template -- using
only ssb's public API, exactly as a package from PyPI would.  It is also ssb's offline demo set:
no download needed, and hard enough for a 0.5B model to get some rollouts right and some wrong.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from ssb.answers import Extraction, extract_answer, parse_number
from ssb.dataio import BadField, Row, load_problems, text_field
from ssb.errors import SsbError
from ssb.hookspecs import hookimpl
from ssb.prompts import TEACHER_TEMPLATE_V2, instruction_templates, make_template
from ssb.records import Problem, Verdict
from ssb.types import DatasetLoader, LoadResult

from ssb_arithmetic.generator import iter_generated

__version__ = "0.1.0"

DEFAULT_SIZES = {"train": 200, "test": 50, "dev": 200}
# Different problems per split, same seed.  ``dev`` is for choosing settings (templates, learning
# rates, ...) so that nothing is ever tuned on ``test``.
SPLIT_OFFSETS = {"train": 1, "test": 2, "dev": 3}


def load(source: str | None = None, split: str = "train", skip_bad: bool = False,
         filters: dict[str, Any] | None = None) -> LoadResult:
    """Generated problems (``filters``: ``n``, ``seed``, ``start``: problems ``start`` to
    ``start + n - 1`` of the split's stream, ids unchanged, e.g. a later round's new problems),
    or a jsonl/json/parquet file with ``question`` and integer ``answer`` fields when ``source``
    is a path."""
    filters = dict(filters or {})
    if source not in (None, "", "generated"):
        if filters:
            raise SsbError("filters n/seed/start apply to generated problems only")
        return load_problems(source, split, _normalize_file_row(split), skip_bad=skip_bad)
    if split not in SPLIT_OFFSETS:
        raise SsbError(f"dataset 'arithmetic' has splits {sorted(SPLIT_OFFSETS)}, not {split!r}")
    unknown = set(filters) - {"n", "seed", "start"}
    if unknown:
        raise SsbError(f"unknown filter(s) {sorted(unknown)}; 'arithmetic' takes n, seed and "
                       "start")
    try:
        n = int(filters.get("n", DEFAULT_SIZES[split]))
        seed = int(filters.get("seed", 0))
        start = int(filters.get("start", 0))
    except ValueError as exc:
        raise SsbError(f"filters n, seed and start must be integers ({exc})") from None
    if n < 0 or start < 0:
        raise SsbError(f"filters n and start must be >= 0, got n={n}, start={start}")
    return LoadResult(problems=GeneratedProblems(split, n, seed, start))


class GeneratedProblems(Sequence):
    """The ``n`` generated problems of a split, made on demand: iterating stops where the
    caller stops (``--limit``), and ``problems[:k]`` builds ``k``, so ``n=10**9`` costs only
    what is used.  Problem ``i`` is the same whatever is asked for first."""

    def __init__(self, split: str, n: int, seed: int, start: int = 0):
        self.split, self.n, self.seed, self.start = split, n, seed, start

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Problem]:
        made = iter_generated(self.seed * 1000 + SPLIT_OFFSETS[self.split])
        for i, q in enumerate(itertools.islice(made, self.start, self.start + self.n),
                              start=self.start):
            yield Problem(id=f"arithmetic/{self.split}/{i}", question=q.text,
                          gold=str(q.answer), dataset="arithmetic",
                          metadata={"steps": q.steps, "seed": self.seed})

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(itertools.islice(self, *index.indices(self.n)))
        i = index + self.n if index < 0 else index
        if not 0 <= i < self.n:
            raise IndexError(index)
        return next(itertools.islice(self, i, None))


def _normalize_file_row(split: str):
    def normalize(row: Row) -> Problem:
        question = text_field(row, "question")
        answer = row.data.get("answer")
        if answer is None:
            raise BadField("answer", "missing field 'answer'")
        value = parse_number(str(answer), allow_units=False)
        if value is None or value != value.to_integral_value():
            raise BadField("answer", f"field 'answer' must be an integer, got {answer!r}")
        return Problem(id=f"arithmetic/{split}/{row.index}", question=question,
                       gold=str(int(value)), dataset="arithmetic")

    return normalize


class ArithmeticVerifier:
    """Integer equality: the last ``\\boxed{}``, else "the answer is ...", else the last number."""

    domain = "arithmetic"
    extraction = Extraction(boxed=True, answer_is=True, last_number=True)

    def extract(self, response: str, strict: bool = False) -> str | None:
        return extract_answer(response, self.extraction.strict() if strict else self.extraction)

    def verify(self, response: str, gold: str, strict: bool = False, **_: Any) -> Verdict:
        extracted = self.extract(response, strict=strict)
        if extracted is None:
            return Verdict(extracted=None, correct=False)
        candidate = extracted.rsplit("=", 1)[-1]  # "3 * 4 = 12" -> 12
        value, expected = parse_number(candidate), parse_number(gold)
        return Verdict(extracted=extracted,
                       correct=value is not None and expected is not None and value == expected)


# Version 2 of the hinted prompt is the default (registered first); version 1 stays registered
# so that `--template arithmetic-tutor@1` reproduces runs made with it (docs/study-teacher.md).
TEMPLATE = make_template("arithmetic-tutor", "2", "arithmetic", teacher=TEACHER_TEMPLATE_V2)
TEMPLATE_V1 = make_template("arithmetic-tutor", "1", "arithmetic")


@hookimpl
def register_datasets(register):
    register(DatasetLoader(name="arithmetic", domain="arithmetic", load=load,
                           default_source="generated", splits=("train", "test", "dev"),
                           description="generated 2-4 step arithmetic word problems (offline)"))


@hookimpl
def register_verifiers(register):
    register(ArithmeticVerifier())


@hookimpl
def register_prompts(register):
    register(TEMPLATE)
    register(TEMPLATE_V1)
    for template in instruction_templates("arithmetic"):  # the study's training-free `prompt` arm
        register(template)
