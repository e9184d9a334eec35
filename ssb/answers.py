"""Final-answer extraction from model text, shared by the domains (pure functions, no sympy).

A response's answer is, in order of preference (each step can be switched off):

1. ``boxed``: the content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces matched;
   ``\\boxed 5`` without braces is accepted too).  An unclosed last box is ignored.
2. ``answer_is``: the text after the last "the (final) answer is", "Answer:" or GSM8K's "####",
   up to the end of that sentence/line.
3. ``last_number``: the last number in the text (GSM8K-style; off by default).

Everything here is a linear scan over the text: model output is untrusted and may be huge or
hostile, so no regex with nested quantifiers is applied to it and nothing is ever evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# Model text beyond this is not searched (a rollout is a few thousand tokens at most).
MAX_RESPONSE_CHARS = 200_000

def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, else None.

    Empty boxes are skipped.  Braces nest (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``); escaped braces ``\\{``/``\\}``
    do not count.  ``\\boxed 5`` (no braces) gives ``5``.  An unclosed box is skipped.
    """
    text = text[-MAX_RESPONSE_CHARS:]
    starts = sorted(
        (m.end() for m in _BOX_RE.finditer(text)), reverse=True
    )
    if not starts:
        return None
    closing = None  # brace matching computed once, only when a braced box is present
    n = len(text)
    for i in starts:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            continue
        if text[i] != "{":
            j = i
            while j < n and not text[j].isspace() and text[j] not in "$\\":
                j += 1
            if j > i:
                return text[i:j].strip()
            continue
        if closing is None:
            closing = _match_braces(text)
        end = closing.get(i)
        if end is not None and text[i + 1 : end].strip():  # an empty box carries no answer
            return text[i + 1 : end].strip()
    return None


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _match_braces(text: str) -> dict[int, int]:
    """Open-brace position -> matching close-brace position (escaped braces ignored)."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_TOKEN.finditer(text):
        tok = m.group(0)
        if tok == "{":
            stack.append(m.start())
        elif tok == "}":
            if stack:
                closing[stack.pop()] = m.start()
    return closing


_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)


_ANSWER_IS = re.compile(r"(?:\banswer[\s*]*(?:is\b|:)|####)[\s*:]*", re.IGNORECASE)


def answer_is(text: str) -> str | None:
    """The phrase after the last "the answer is" / "final answer:" / "Answer:" / "####".

    The answer ends at the end of the line or at a sentence-ending period (a decimal point
    such as ``3.5`` does not end it); surrounding ``$``, ``**`` and a trailing period are removed.
    """
    text = text[-MAX_RESPONSE_CHARS:]
    last = None
    for m in _ANSWER_IS.finditer(text):
        last = m
    if last is None:
        return None
    rest = text[last.end():]
    line = rest.split("\n", 1)[0]
    # cut at a sentence end: ". " or "." at end, but not a decimal point
    cut = len(line)
    for k, c in enumerate(line):
        if c == "." and (k + 1 == len(line) or line[k + 1] in " \t") and not (
            k + 1 < len(line) and line[k + 1].isdigit()
        ):
            cut = k
            break
    answer = line[:cut].strip().strip("*").strip()
    if answer.startswith("$") and answer.endswith("$") and len(answer) >= 2:
        answer = answer.strip("$").strip()
    inner = last_boxed(answer)
    if inner is not None:
        answer = inner
    return answer or None


_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def last_number(text: str) -> str | None:
    """The last number in ``text`` (``1,234.5`` and ``-3`` included), commas removed."""
    text = text[-MAX_RESPONSE_CHARS:]
    found = None
    for m in _NUMBER.finditer(text):
        found = m.group(0)
    if found is None:
        return None
    return found.replace(",", "")


@dataclass(frozen=True)
class Extraction:
    """Which extraction steps a domain uses (see the module docstring)."""

    boxed: bool = True
    answer_is: bool = True
    last_number: bool = False

    def strict(self) -> "Extraction":
        """Only boxed answers."""
        return Extraction(boxed=True, answer_is=False, last_number=False)


def extract_answer(text: str | None, how: Extraction = Extraction()) -> str | None:
    """The final answer of ``text`` following ``how``; None when nothing is found."""
    if not text:
        return None
    if how.boxed:
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
    if how.answer_is:
        phrase = answer_is(text)
        if phrase is not None:
            return phrase
    if how.last_number:
        return last_number(text)
    return None


# ---------------------------------------------------------------------------------------------
# Numbers written by people and models: "$1,000.00", "10\%", "\$18", "1{,}000", "-5", "−5".

_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad|~")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def strip_text_wrappers(s: str) -> str:
    """``\\text{foo}`` -> ``foo`` (one level, repeated), for comparing textual answers."""
    for _ in range(5):
        new = _TEXT_WRAPPERS.sub(lambda m: m.group(1), s)
        if new == s:
            break
        s = new
    return s


def parse_number(s: str | None, *, allow_units: bool = True) -> Decimal | None:
    """A plain decimal number written in ``s``, tolerant of ``$``, commas as thousands
    separators, ``{,}``, a trailing ``%``/``\\%``, ``.00``, a unicode minus and (with
    ``allow_units``) trailing words such as ``eggs`` or ``\\text{ dollars}``.

    Returns None when ``s`` is not a single plain number (fractions, expressions, lists).
    """
    if s is None:
        return None
    s = s.strip()
    if not s or len(s) > 200:
        return None
    s = s.replace("\u2212", "-").replace("{,}", ",").replace("\\$", "").replace("$", "")
    s = _SPACING.sub("", s)
    s = strip_text_wrappers(s)
    s = s.replace("\\%", "").replace("%", "").strip()
    s = s.rstrip(".").strip()
    if allow_units:
        # "18 eggs", "5 dollars per hour": a number followed only by words
        m = re.match(r"([+-]?[\d.,]+)\s*([A-Za-z][A-Za-z .\-/]*)?$", s)
        if m is not None:
            s = m.group(1)
    s = s.replace(" ", "")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(s):
        return None
    try:
        return Decimal(s)
    except InvalidOperation:
        return None
