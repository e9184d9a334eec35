"""GSM8K (grade-school math word problems) for ssb.

Registers the dataset ``gsm8k`` (hub ``openai/gsm8k`` config ``main``, or a local
jsonl/json/parquet file or folder with ``train``/``test`` files), the verifier domain ``gsm8k``
(numeric equality) and the prompt template ``gsm8k-tutor@1``.
"""

from __future__ import annotations

from typing import Any

from ssb.answers import Extraction, extract_answer, parse_number
from ssb.dataio import BadField, Row, load_problems, text_field
from ssb.errors import SsbError
from ssb.hookspecs import hookimpl
from ssb.prompts import TEACHER_TEMPLATE_V2, instruction_templates, make_template
from ssb.records import Problem, Verdict
from ssb.types import DatasetLoader, LoadResult
from ssb.verification import DEFAULT_TIMEOUT, latex_equal

__version__ = "0.1.0"

HUB_ID = "openai/gsm8k"
HUB_CONFIG = "main"
GOLD_MARKER = "####"


def gold_from_solution(answer: str) -> str:
    """The final answer after the last ``####`` of a GSM8K ``answer`` field, commas removed."""
    head, marker, tail = answer.rpartition(GOLD_MARKER)
    if not marker:
        raise BadField("answer", "field 'answer' has no '#### <final answer>' line")
    gold = tail.strip().replace(",", "").replace("$", "").strip()
    if not gold:
        raise BadField("answer", "field 'answer' has an empty final answer after '####'")
    return gold


def load(source: str | None = None, split: str = "train", skip_bad: bool = False,
         filters: dict[str, Any] | None = None) -> LoadResult:
    """GSM8K problems; ``id`` is ``gsm8k/{split}/{row index}``.

    Filter ``rows=START:STOP``: only the rows with ``START <= index < STOP`` (0-based, file
    order; either bound may be left out), e.g. a dev slice of ``train`` that curation never reads.
    """
    filters = dict(filters or {})
    rows = filters.pop("rows", None)
    if filters:
        raise SsbError(f"dataset 'gsm8k' filters on 'rows' only (got {sorted(filters)})")
    keep = None
    if rows is not None:
        start, stop = _row_range(str(rows))
        keep = lambda row: start <= row.index and (stop is None or row.index < stop)  # noqa: E731

    def normalize(row: Row) -> Problem:
        question = text_field(row, "question")
        answer = text_field(row, "answer")
        gold = gold_from_solution(answer)
        solution = answer.rpartition(GOLD_MARKER)[0].strip()
        return Problem(id=f"gsm8k/{split}/{row.index}", question=question.strip(), gold=gold,
                       dataset="gsm8k", metadata={"solution": solution})

    return load_problems(source or HUB_ID, split, normalize, skip_bad=skip_bad,
                         hub_config=HUB_CONFIG, keep=keep)


def _row_range(text: str) -> tuple[int, int | None]:
    head, colon, tail = text.partition(":")
    try:
        start = int(head) if head.strip() else 0
        stop = int(tail) if tail.strip() else None
    except ValueError:
        start, stop = -1, None
    if not colon or start < 0 or (stop is not None and stop <= start):
        raise SsbError(f"dataset 'gsm8k': filter rows={text!r} must be START:STOP with "
                       "0 <= START < STOP (either may be left out)")
    return start, stop


class GSM8KVerifier:
    """Numeric equality of the final answer with the gold.

    Extraction: last ``\\boxed{}``, else "the answer is ..."/"####", else the last number
    (``strict=True``: boxed only).  ``$``, thousands commas, ``.00``, ``%`` and trailing unit
    words are ignored; in ``x = 18`` the right-hand side counts.  Answers that are not a plain
    number (``\\frac{36}{2}``) go to math-verify, bounded in time.
    """

    domain = "gsm8k"
    extraction = Extraction(boxed=True, answer_is=True, last_number=True)

    def extract(self, response: str, strict: bool = False) -> str | None:
        how = self.extraction.strict() if strict else self.extraction
        return extract_answer(response, how)

    def verify(self, response: str, gold: str, *, timeout: float | None = DEFAULT_TIMEOUT,
               strict: bool = False) -> Verdict:
        extracted = self.extract(response, strict=strict)
        if extracted is None:
            return Verdict(extracted=None, correct=False)
        candidate = extracted.rsplit("=", 1)[-1].strip() if "=" in extracted else extracted
        gold_value = parse_number(gold)
        value = parse_number(candidate)
        if value is not None and gold_value is not None:
            return Verdict(extracted=extracted, correct=value == gold_value)
        if not candidate:
            return Verdict(extracted=extracted, correct=False)
        verdict = latex_equal(gold, candidate, timeout=timeout)
        return Verdict(extracted=extracted, correct=verdict.correct, error=verdict.error)


# Version 2 of the hinted prompt is the default (registered first); version 1 stays registered
# so that `--template gsm8k-tutor@1` reproduces runs made with it (docs/study-teacher.md).
TEMPLATE = make_template("gsm8k-tutor", "2", "gsm8k", teacher=TEACHER_TEMPLATE_V2)
TEMPLATE_V1 = make_template("gsm8k-tutor", "1", "gsm8k")


@hookimpl
def register_datasets(register):
    register(DatasetLoader(name="gsm8k", domain="gsm8k", load=load, default_source=HUB_ID,
                           splits=("train", "test"),
                           description="GSM8K grade-school math (openai/gsm8k, config main)"))


@hookimpl
def register_verifiers(register):
    register(GSM8KVerifier())


@hookimpl
def register_prompts(register):
    register(TEMPLATE)
    register(TEMPLATE_V1)
    for template in instruction_templates("gsm8k"):  # the study's training-free `prompt` arm
        register(template)
