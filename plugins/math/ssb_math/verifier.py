"""The ``math`` verifier: final answer (last ``\\boxed{}``) vs a LaTeX gold, via math-verify.

Order of checks for ``math_equal(gold, answer)``:

1. the same string after light normalization (spacing, ``\\left``/``\\right``, ``\\dfrac``);
2. textual golds (``\\text{Evelyn}``, ``\\text{(B)}``, ``\\text{even}``) compare as
   case-insensitive text, never symbolically (math-verify would read ``Evelyn`` as a product
   of six symbols, equal to any anagram);
3. a set answer never equals a parenthesized tuple/interval gold, nor the reverse (order matters
   for tuples and intervals, not for sets);
4. two plain numbers that are equal (``1,000`` = ``1000``, ``10\\%`` = ``10``);
5. math-verify in a killable helper process (gold passed as gold: ``x=5`` answers ``5``),
   after a cheap guard against pathological input; an overrun is ``error="timeout"``.
"""

from __future__ import annotations

import re

from ssb.answers import Extraction, extract_answer, parse_number, strip_text_wrappers
from ssb.records import Verdict
from ssb.verification import DEFAULT_TIMEOUT, check_complexity, latex_equal

_SPACES = re.compile(r"\\[,;:! ]|\\quad|\\qquad|\\displaystyle|\\left|\\right|\s+")
_HAS_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit)\s*\{")
_WORDS = re.compile(r"[a-z][a-z \-'.]*")


def normalize(latex: str) -> str:
    s = latex.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s.strip("$")
    s = _SPACES.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return s.rstrip(".")


def as_text(latex: str) -> str | None:
    """Lower-cased words of a textual answer (``\\text{(B)}`` -> ``b``), or None."""
    s = strip_text_wrappers(latex.strip().strip("$")).strip().rstrip(".").strip()
    if len(s) >= 3 and s[0] == "(" and s[-1] == ")":
        s = s[1:-1].strip()
    s = " ".join(s.lower().split())
    return s if s and _WORDS.fullmatch(s) else None


def is_text_gold(gold: str) -> bool:
    """A gold that is words or a choice letter, not a formula: ``\\text{east}``, ``(B)``."""
    text = as_text(gold)
    if text is None:
        return False
    bare = gold.strip().strip("$").strip()
    return bool(_HAS_TEXT_WRAPPER.search(gold)) or bool(re.fullmatch(r"\(\s*[A-Za-z]\s*\)", bare))


def _shape(latex: str) -> str:
    s = normalize(latex)
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set"
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and "," in s:
        return "ordered"  # tuple or interval
    return "other"


def math_equal(gold: str, answer: str, *, timeout: float | None = DEFAULT_TIMEOUT
               ) -> tuple[bool, str | None]:
    """(equal, error) for a LaTeX gold and an extracted answer; see the module docstring."""
    if not answer or not answer.strip():
        return False, None
    reason = check_complexity(answer)
    if reason is not None:
        return False, f"rejected: {reason}"
    g, a = normalize(gold), normalize(answer)
    if g == a:
        return True, None
    if is_text_gold(gold):
        return as_text(answer) == as_text(gold), None
    if {_shape(gold), _shape(answer)} == {"set", "ordered"}:
        return False, None
    gn, an = parse_number(gold, allow_units=False), parse_number(answer, allow_units=False)
    if gn is not None and an is not None and gn == an:
        return True, None
    verdict = latex_equal(gold, answer, timeout=timeout)
    return verdict.correct, verdict.error


class MathVerifier:
    """math-verify equivalence of the last ``\\boxed{}`` (fallback: "the answer is ...")."""

    domain = "math"
    extraction = Extraction(boxed=True, answer_is=True, last_number=False)

    def extract(self, response: str, strict: bool = False) -> str | None:
        how = self.extraction.strict() if strict else self.extraction
        return extract_answer(response, how)

    def verify(self, response: str, gold: str, *, timeout: float | None = DEFAULT_TIMEOUT,
               strict: bool = False) -> Verdict:
        extracted = self.extract(response, strict=strict)
        if extracted is None:
            return Verdict(extracted=None, correct=False)
        correct, error = math_equal(gold, extracted, timeout=timeout)
        return Verdict(extracted=extracted, correct=correct, error=error)
