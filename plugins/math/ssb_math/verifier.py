"""The ``math`` verifier: the final answer of a response vs a LaTeX gold, via math-verify.

Extraction (``ssb.answers``, the same rules for every response): the LAST answer statement of
whatever kind is the answer: a ``\\boxed{}`` (adjacent boxes such as ``\\boxed{2} or
\\boxed{3}`` are one multi-part answer, ``2,3``, graded as the set/tuple they state, as
math-verify's own extraction reads them), or what follows a marker ("the final answer is",
"Answer:"; "Final Answer: The largest $n$ is 34." answers ``34``), or a response that is nothing
but one formula (``$\\{1,3\\}$``).

Free prose with no box and no answer marker ("... so there are 12 apples.") is deliberately NOT
graded: it gives ``extracted=None``, ``correct=False``.  math-verify would take the last number
or formula of such text, which is often an intermediate value; a student that states no answer
has not answered, and the templates ask for ``\\boxed{}``.  This and the other intended
differences from math-verify's verdicts (a decimal comma is never a decimal point; a later "The
final answer is X." beats a box; boxes in separate sentences are not joined) are listed, with
the measured agreement, in tests/data/README.md.

A gold written as text (``$9$``, ``\\boxed{1} and \\boxed{2}``, a whole solution) is read the
same way, falling back to its last math span (``$125$ miles``); a bare LaTeX gold (datasets) is
used as is.

Order of checks for ``math_equal(gold, answer)``:

1. the same string after light normalization (spacing, ``\\left``/``\\right``, ``\\dfrac``;
   :func:`ssb.answers.normalize_latex`), before any guard: an identical answer is right however
   large it is;
2. textual golds (``\\text{Evelyn}``, ``\\text{(B)}``, ``\\text{even}``) compare as
   case-insensitive text, never symbolically (math-verify would read ``Evelyn`` as a product
   of six symbols, equal to any anagram);
3. a set answer never equals a parenthesized tuple/interval gold, nor the reverse (order matters
   for tuples and intervals, not for sets);
4. two plain numbers that are equal (``1,000`` = ``1000``, ``10\\%`` = ``10``, ``34 cm`` = ``34``
   for a numeric gold); digit-group commas count only when well formed and unspaced
   (``32, 349`` is two numbers, not ``32349``);
5. math-verify in a killable helper process (gold passed as gold: ``x=5`` answers ``5``),
   after a cheap guard against pathological input; an overrun is ``error="timeout"``.
"""

from __future__ import annotations

import re

from ssb.answers import (Extraction, extract_answer, last_math_span, normalize_latex,
                         parse_number, strip_text_wrappers)
from ssb.records import Verdict
from ssb.verification import DEFAULT_TIMEOUT, check_complexity, latex_equal

_HAS_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit)\s*\{")
_WORDS = re.compile(r"[a-z][a-z \-'.]*")
normalize = normalize_latex  # the one light normalization (ssb.answers), under its old name


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
    if s.startswith("\\{") and s.endswith("\\}") and _encloses(s, 2):
        return "set"
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and "," in s and _encloses(s, 1):
        return "ordered"  # tuple or interval
    return "other"


def _encloses(s: str, width: int) -> bool:
    """True when the opening bracket of ``s`` (``width`` characters) closes only at its end:
    ``(1,2)`` is one tuple, ``(1,2),(3,4)`` is a list of two."""
    depth = 0
    i = 0
    while i < len(s):
        if s.startswith("\\{", i) or s.startswith("\\}", i):
            c = s[i + 1]
            i += 2
        else:
            c = s[i]
            i += 1
            if c == "\\":
                i += 1  # another escape: not a bracket
                continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i < len(s):
                return False
    return True


_UNIT_WORDS = re.compile(r"([+-]?[\d.,]+)\s+(?:[A-Za-z]{2,}\.?\s*)+$")


def _number_with_words(answer: str):
    """``34 cm`` / ``12 ways`` -> 34 / 12: a number followed only by words of two or more
    letters (``3 x`` is not a number)."""
    s = strip_text_wrappers(answer.strip().strip("$")).strip()
    m = _UNIT_WORDS.fullmatch(s)
    return parse_number(m.group(1), allow_units=False) if m else None


def math_equal(gold: str, answer: str, *, timeout: float | None = DEFAULT_TIMEOUT
               ) -> tuple[bool, str | None]:
    """(equal, error) for a LaTeX gold and an extracted answer; see the module docstring."""
    if not answer or not answer.strip():
        return False, None
    g, a = normalize(gold), normalize(answer)
    if g == a:  # before the guard: an identical answer is right however large it is
        return True, None
    reason = check_complexity(answer)
    if reason is not None:
        return False, f"rejected: {reason}"
    if is_text_gold(gold):
        return as_text(answer) == as_text(gold), None
    if {_shape(gold), _shape(answer)} == {"set", "ordered"}:
        return False, None
    gn, an = parse_number(gold, allow_units=False), parse_number(answer, allow_units=False)
    if gn is not None and an is None:
        an = _number_with_words(answer)
    if gn is not None and an is not None and gn == an:
        return True, None
    verdict = latex_equal(gold, answer, timeout=timeout)
    return verdict.correct, verdict.error


_DELIMITED = re.compile(r"(?<!\\)\$|\\boxed|\\fbox|\\\(|\\\[")


def gold_answer(gold: str) -> str:
    """The answer a gold states: a bare LaTeX gold as is; a gold written as text (``$9$``,
    ``\\boxed{1} and \\boxed{2}``, a solution) read like a response, else its last math span."""
    if not _DELIMITED.search(gold):
        return gold
    found = extract_answer(gold, MathVerifier.extraction) or last_math_span(gold)
    return found if found else gold


class MathVerifier:
    """math-verify equivalence of the last answer statement (see the module docstring)."""

    domain = "math"
    extraction = Extraction(boxed=True, answer_is=True, last_number=False, multi_box=True,
                            whole=True)

    def extract(self, response: str, strict: bool = False) -> str | None:
        how = self.extraction.strict() if strict else self.extraction
        return extract_answer(response, how)

    def verify(self, response: str, gold: str, *, timeout: float | None = DEFAULT_TIMEOUT,
               strict: bool = False) -> Verdict:
        extracted = self.extract(response, strict=strict)
        if extracted is None:
            return Verdict(extracted=None, correct=False)
        correct, error = math_equal(gold_answer(gold), extracted, timeout=timeout)
        return Verdict(extracted=extracted, correct=correct, error=error)
