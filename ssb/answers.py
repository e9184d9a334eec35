"""Final-answer extraction from model text, shared by the domains (pure functions, no sympy).

A response's answer is its LAST answer statement, of whatever kind (each kind can be switched
off in :class:`Extraction`):

* ``boxed``: a ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces matched; ``\\boxed 5`` without
  braces too; an unclosed box is ignored).  With ``multi_box``, boxes that sit next to each other
  (``x = \\boxed{2} or x = \\boxed{3}``, ``\\boxed{(2,2)} and \\boxed{(6,2)}``) together are one
  multi-part answer, joined with commas (``2,3``), following math-verify's own rule: fewer than
  10 characters between them, or fewer than 70 holding "and", "or", "," or ";" (and, unlike
  math-verify, no sentence end).
* ``answer_is``: the answer after a marker: "the (final) answer is", "Answer:", "the answer to
  ... is", "Answer $...$" or GSM8K's "####".  A math span right after the marker is the answer
  (``$x=5$``; several joined by "and"/"or"/"," are a multi-part answer); otherwise the phrase up
  to the end of that sentence/line, where a sentence such as "The largest $n$ is 34" gives what
  follows its verb ("34").  A marker that comes after the last box replaces it only when what it
  states looks like mathematics (a digit, a LaTeX command, ``=``): "... so the subtotal is
  \\boxed{255}. ... The final answer is $10,455$." answers ``10,455``, while "\\boxed{7}. This
  answer is correct." still answers ``7``.
* ``whole``: a response that is nothing but one math span or one short formula (``$\\{1,3\\}$``,
  ``-5``) is its own answer (off by default).
* ``last_number``: the last number in the text (GSM8K-style; off by default).

Free prose without any of these (``... so we get 12 apples``) has no answer on purpose unless
``last_number`` is on: guessing the final number of a derivation grades intermediate values.

Everything here is a linear scan over the text: model output is untrusted and may be huge or
hostile, so no regex with nested quantifiers is applied to it and nothing is ever evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

# Model text beyond this is not searched (a rollout is a few thousand tokens at most).
MAX_RESPONSE_CHARS = 200_000
# A math span ($...$, \[...\]) longer than this is not an answer (and is not searched further).
MAX_SPAN_CHARS = 2_000


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, else None.

    Empty boxes are skipped.  Braces nest (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``); escaped braces ``\\{``/``\\}``
    do not count.  ``\\boxed 5`` (no braces) gives ``5``.  An unclosed box is skipped.
    """
    found = boxes(text)
    return found[-1][2] if found else None


def boxes(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of every complete, non-empty box in ``text``, in order.

    ``start`` is the position of ``\\boxed``, ``end`` the position after its closing brace.  A box
    nested inside another (``\\boxed{\\boxed{5}}``) is part of the outer one.
    """
    text = text[-MAX_RESPONSE_CHARS:]
    starts = [(m.start(), m.end()) for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    closing = None  # brace matching computed once, only when a braced box is present
    n = len(text)
    found: list[tuple[int, int, str]] = []
    for start, i in starts:
        if found and start < found[-1][1]:
            continue  # inside the previous box
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            continue
        if text[i] != "{":
            j = i
            while j < n and not text[j].isspace() and text[j] not in "$\\":
                j += 1
            if j > i:
                found.append((start, j, text[i:j].strip()))
            continue
        if closing is None:
            closing = _match_braces(text)
        end = closing.get(i)
        if end is not None and text[i + 1 : end].strip():  # an empty box carries no answer
            found.append((start, end + 1, text[i + 1 : end].strip()))
    return found


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BOX_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")
# Boxes in different sentences are separate statements ("... \\boxed{255}. Then, adding the
# interest, \\boxed{10455}"): stricter than math-verify, which joins on any comma.
_SENTENCE_END = re.compile(r"[.!?]\s+[A-Z]")


def final_boxed(text: str, *, multi: bool = True) -> tuple[int, int, str] | None:
    """``(start, end, answer)`` of the last box, or of the last run of adjacent boxes joined with
    commas when ``multi`` (see the module docstring for when boxes are adjacent); None if no box.
    """
    found = boxes(text)
    if not found:
        return None
    text = text[-MAX_RESPONSE_CHARS:]
    start, end, content = found[-1]
    parts = [content]
    if multi:
        for prev_start, prev_end, prev in reversed(found[:-1]):
            gap = text[prev_end:start]
            close = len(gap) < 10 or (prev != parts[-1] and len(gap) < 70
                                      and _BOX_SEPARATOR.search(gap) is not None
                                      and _SENTENCE_END.search(gap) is None)
            if not close:
                break
            if prev != parts[-1]:  # "\\boxed{2}. \\boxed{2}" is one answer
                parts.append(prev)
            start = prev_start
    return start, end, ",".join(reversed(parts))


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


# ---------------------------------------------------------------------------------------------
# Math spans: $...$, $$...$$, \(...\), \[...\]

_SPAN_OPEN = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_SPAN_JOIN = re.compile(r"\s*(?:,?\s*\b(?:and|or)\b|,)\s*")


def math_span_at(text: str, i: int) -> tuple[str, int] | None:
    """``(content, end)`` of the math span opening at ``text[i]``, or None.

    An inline ``$...$`` / ``\\(...\\)`` stays on one line; display spans may not.  Spans longer
    than :data:`MAX_SPAN_CHARS` are not answers.
    """
    for opener, closer in _SPAN_OPEN:
        if not text.startswith(opener, i):
            continue
        if opener == "$" and text.startswith("$$", i):
            continue
        j = i + len(opener)
        limit = min(len(text), j + MAX_SPAN_CHARS)
        while True:
            k = text.find(closer, j, limit)
            if k < 0:
                return None
            if k > 0 and text[k - 1] == "\\" and closer == "$":
                j = k + 1  # an escaped \$ inside the span
                continue
            break
        content = text[i + len(opener):k]
        if opener in ("$", "\\(") and "\n" in content:
            return None
        if not content.strip():
            return None
        return content.strip(), k + len(closer)
    return None


def math_spans_at(text: str, i: int) -> tuple[str, int] | None:
    """Like :func:`math_span_at`, but spans joined by "and"/"or"/"," (``$12$ and $13$``) are one
    multi-part answer, joined with commas (up to 6 spans, as math-verify reads them)."""
    first = math_span_at(text, i)
    if first is None:
        return None
    parts, end = [first[0]], first[1]
    for _ in range(5):
        m = _SPAN_JOIN.match(text, end, min(len(text), end + 40))
        if m is None or m.end() == end:
            break
        nxt = math_span_at(text, m.end())
        if nxt is None:
            break
        parts.append(nxt[0])
        end = nxt[1]
    return ",".join(parts), end


def last_math_span(text: str) -> str | None:
    """Content of the last math span of ``text`` (for golds written as prose: ``$125$ miles``)."""
    text = text[-MAX_RESPONSE_CHARS:]
    found = None
    resume = 0
    next_closer: dict[str, int] = {}  # where each closer occurs next: keeps the scan linear
    for m in _SPAN_OPENER.finditer(text):
        i = m.start()
        if i < resume:
            continue  # inside the span found last
        closer = _CLOSER[m.group(0)]
        k = next_closer.get(closer, -1)
        if k != len(text) and k < m.end():
            k = text.find(closer, m.end())
            next_closer[closer] = k = len(text) if k < 0 else k
        if k - m.end() > MAX_SPAN_CHARS:
            continue
        span = math_span_at(text, i)
        if span is not None:
            found, resume = span[0], span[1]
    return found


# "$$", "\[", "\(" or a "$" that is not escaped; a span is checked at each, left to right.
_SPAN_OPENER = re.compile(r"\$\$|\\\[|\\\(|(?<!\\)\$")
_CLOSER = {"$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$"}


# ---------------------------------------------------------------------------------------------
# Answer statements

# "answer:", "answer is", "answers are", "the answer to part (a) is", "Answer $9$", "####".
# The middle part is bounded ({0,80}) and excludes sentence ends, so a match is linear.
_ANSWER_IS = re.compile(
    r"\banswers?\b(?:[\s*]*:|[^.:;\n$]{0,80}?\b(?:is|are)\b[\s*:]*|[\s*]*(?=\$|\\\(|\\\[))"
    r"|####[\s*:]*",
    re.IGNORECASE)
# "... $x \le 2$ is our answer": the math span right before the marker is the answer.
_ANSWER_AFTER = re.compile(r"[ \t]*\b(?:is|are)[ \t]+(?:our|the|my)[ \t]+(?:final[ \t]+)?answers?\b",
                           re.IGNORECASE)
_STRONG_AFTER = re.compile(r"[ \t]*\b(?:is|are)[ \t]+the[ \t]+(?:final[ \t]+)?answers?\b", re.I)
# "The largest $n$ is 34", "There are 12 ways": the answer follows the verb.
_COPULA = re.compile(r"\b(?:is|are|equals|was|were|be)\b[\s:]*", re.IGNORECASE)
_ONE_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
# Only the last few statements are read (hostile text may repeat "answer:" thousands of times).
MAX_MARKERS = 20
_MATHLIKE = re.compile(r"[\d\\=^]")


def answer_is(text: str) -> str | None:
    """The answer stated after the last "the answer is" / "final answer:" / "Answer:" / "####"
    (or before "... is our answer").

    A math span right after the marker is the answer; otherwise the phrase ends at the end of the
    line or at a sentence-ending period (a decimal point such as ``3.5`` does not end it), and a
    sentence with a verb ("The largest $n$ is 34") gives what follows its last verb; a sentence
    that holds one number and no formula ("Jane started 3 hours ago") gives that number.
    Surrounding ``$``, ``**`` and a trailing period are removed.
    """
    found = _last_statement(text, need_math=False)
    return found[1] if found else None


def _last_statement(text: str, *, need_math: bool, after: int = -1) -> tuple[int, str] | None:
    """``(position, answer)`` of the last answer statement starting after ``after`` whose
    answer is non-empty (and looks like mathematics when ``need_math``)."""
    text = text[-MAX_RESPONSE_CHARS:]
    found: list[tuple[int, str | None]] = []
    for m in _ANSWER_IS.finditer(text):
        if m.start() > after and (not need_math or _is_strong(text, m.start())):
            found.append((m.start(), None))
            if len(found) > 2 * MAX_MARKERS:
                del found[:MAX_MARKERS]
    for m in _ANSWER_AFTER.finditer(text):
        if need_math and not _STRONG_AFTER.match(text, m.start()):
            continue
        span = _span_ending_at(text, m.start())
        if span is not None and span[0] > after:
            found.append(span)
            if len(found) > 3 * MAX_MARKERS:
                found.sort(key=lambda f: f[0])
                del found[:MAX_MARKERS]
    found.sort(key=lambda f: f[0])
    for pos, content in reversed(found[-MAX_MARKERS:]):
        if content is None:
            m = _ANSWER_IS.match(text, pos)
            answer = _statement_answer(text, m.end()) if m else None
        else:
            answer = _clean(content)
        if answer and (not need_math or _MATHLIKE.search(answer)):
            return pos, answer
    return None


def _is_strong(text: str, pos: int) -> bool:
    """A marker that states THE answer: "final answer", "the answer", "####", or "Answer" at the
    start of a line.  Weaker ones ("we may check our answer: $17 \\cdot 44 = 748$") do not
    replace an earlier box."""
    if text.startswith("####", pos):
        return True
    before = text[max(0, pos - 12):pos].lower()
    if _STRONG_BEFORE.search(before):
        return True
    line_start = text.rfind("\n", 0, pos) + 1
    return not text[line_start:pos].strip(" \t*#>-")


_STRONG_BEFORE = re.compile(r"\b(?:final|the)[\s*]*$")


def _span_ending_at(text: str, end: int) -> tuple[int, str] | None:
    """``(start, content)`` of the math span (or box) that ends exactly at ``end``, if any."""
    before = text[max(0, end - MAX_SPAN_CHARS):end]
    offset = end - len(before)
    for closer, opener in (("$$", "$$"), ("\\]", "\\["), ("\\)", "\\("), ("$", "$")):
        if not before.endswith(closer) or (closer == "$" and before.endswith("$$")):
            continue
        k = before.rfind(opener, 0, len(before) - len(closer))
        while k >= 0:
            span = math_span_at(before, k)
            if span is not None and span[1] == len(before):
                return offset + k, span[0]
            k = before.rfind(opener, 0, k)
            if closer == "$":
                break  # only the nearest "$" can open an inline span ending here
        return None
    if before.endswith("}"):
        box = final_boxed(before, multi=False)
        if box is not None and box[1] == len(before):
            return offset + box[0], box[2]
    return None


def _statement_answer(text: str, i: int) -> str | None:
    n = len(text)
    while i < n and text[i] in " \t*:\"'":
        i += 1
    if i < n and text[i] == "\n":  # "**Final Answer:**\n$x=5$": the answer is on the next line
        while i < n and text[i] in " \t\r\n*:\"'":
            i += 1
    span = math_spans_at(text, i)
    if span is not None:
        return _clean(span[0])
    line = text[i:i + MAX_SPAN_CHARS].split("\n", 1)[0]
    phrase = _first_sentence(line).strip().strip("*").strip()
    if phrase[:1].isalpha():
        phrase = _after_verb(phrase)
    return _clean(phrase)


def _after_verb(phrase: str) -> str:
    """What a sentence states: the text after its last verb followed by mathematics ("The
    maximum number of points that could be in the domain is 19" -> "19"), else its only number
    when it holds one and no formula, else the sentence."""
    best = None
    for verb in _COPULA.finditer(phrase):
        rest = phrase[verb.end():].lstrip(" \t\"'")
        if rest and _MATHLIKE.search(rest):
            best = rest
    if best is not None:
        span = math_spans_at(best, 0)
        return span[0] if span is not None else best
    if "$" not in phrase and "\\" not in phrase:
        numbers = _ONE_NUMBER.findall(phrase)
        if len(numbers) == 1:
            return numbers[0]
    return phrase


def _first_sentence(line: str) -> str:
    """``line`` up to a sentence-ending period ("." at the end or before a space), keeping
    decimal points and periods inside math spans."""
    k = 0
    n = len(line)
    while k < n:
        c = line[k]
        if c in "$\\" and (span := math_span_at(line, k)) is not None:
            k = span[1]
            continue
        if c == "." and (k + 1 == n or line[k + 1] in " \t"):
            return line[:k]
        k += 1
    return line


def _clean(answer: str) -> str | None:
    answer = answer.strip().strip("*").strip()
    if answer in ("$", "$$", "\\(", "\\)", "\\[", "\\]"):
        return None  # a span that never closed
    if answer.startswith("$") and answer.endswith("$") and len(answer) >= 2:
        answer = answer.strip("$").strip()
    answer = answer.rstrip(".").strip()
    inner = final_boxed(answer)
    if inner is not None:
        answer = inner[2]
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


# A whole response that is one short formula: no word of two or more letters outside commands.
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
# ... or one number with at most two unit words: "28 percent", "$1,000.99", "15 cm^2".
_NUMBER_WITH_UNIT = re.compile(r"[$]?[+-]?[\d.,]*\d[\d.,]*[$]?(?:[ \t]*%|(?:[ \t]+[A-Za-z]+){1,2})?")


def whole_answer(text: str) -> str | None:
    """The response itself when it is nothing but one math span, one short formula, or one
    number with a unit word."""
    s = text.strip()
    if not s or len(s) > MAX_SPAN_CHARS:
        return None
    span = math_spans_at(s, 0)
    if span is not None and not s[span[1]:].strip(" \t\n."):
        return span[0]
    s = s.rstrip(".").strip()
    if len(s) > 200 or "\n" in s:
        return None
    if _NUMBER_WITH_UNIT.fullmatch(s):
        return s
    if not _PROSE_WORD.search(re.sub(r"\\[A-Za-z]+", "", s)):
        return s or None
    return None


@dataclass(frozen=True)
class Extraction:
    """Which extraction steps a domain uses (see the module docstring)."""

    boxed: bool = True
    answer_is: bool = True
    last_number: bool = False
    multi_box: bool = False
    whole: bool = False

    def strict(self) -> "Extraction":
        """Only boxed answers."""
        return replace(self, answer_is=False, last_number=False, whole=False)


def extract_answer(text: str | None, how: Extraction = Extraction()) -> str | None:
    """The final answer of ``text`` following ``how``; None when nothing is found."""
    if not text:
        return None
    text = text[-MAX_RESPONSE_CHARS:]
    boxed = final_boxed(text, multi=how.multi_box) if how.boxed else None
    if how.answer_is:
        # a statement after the last box beats it only when it states something mathematical
        stated = _last_statement(text, need_math=boxed is not None,
                                 after=boxed[1] - 1 if boxed is not None else -1)
        if stated is not None:
            return stated[1]
    if boxed is not None:
        return boxed[2]
    if how.whole:
        whole = whole_answer(text)
        if whole is not None:
            return whole
    if how.last_number:
        return last_number(text)
    return None


# ---------------------------------------------------------------------------------------------
# Numbers written by people and models: "$1,000.00", "10\%", "\$18", "1{,}000", "-5", "−5".

_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad|~")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_GROUP_COMMA = re.compile(r"\{\s*,\s*\}|,[ \t]*\\![ \t]*")
_SPACED_COMMA = re.compile(r",\s")


_LATEX_SPACING = re.compile(
    r"\\[,;:! ]|\\(?:quad|qquad|displaystyle|left|right)(?![A-Za-z])|\s+")


def normalize_latex(latex: str) -> str:
    """``latex`` lightly normalized for comparing two answers as strings: surrounding ``$``,
    spacing (``\\,``, ``\\quad``, whitespace), ``\\left``/``\\right``, ``\\dfrac``/``\\tfrac``
    and a final period go.  Two answers equal after this are the same answer, whatever their
    size: the verifiers compare them so before any complexity guard or symbolic work
    (``9^{9^{9^{9}}}`` equals itself, though sympy may never compare it)."""
    s = latex.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s.strip("$")
    s = _LATEX_SPACING.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return s.rstrip(".")


def strip_text_wrappers(s: str) -> str:
    """``\\text{foo}`` -> ``foo`` (one level, repeated), for comparing textual answers."""
    for _ in range(5):
        new = _TEXT_WRAPPERS.sub(lambda m: m.group(1), s)
        if new == s:
            break
        s = new
    return s


def parse_number(s: str | None, *, allow_units: bool = True) -> Decimal | None:
    """A plain decimal number written in ``s``, tolerant of ``$``, well-formed unspaced commas
    as thousands separators (``1,000``, ``1{,}000``, ``1,\\!000``; never ``32, 349``), a
    trailing ``%``/``\\%``, ``.00``, a unicode minus and (with ``allow_units``) trailing words
    such as ``eggs`` or ``\\text{ dollars}``.

    Returns None when ``s`` is not a single plain number (fractions, expressions, lists).
    """
    if s is None:
        return None
    s = s.strip()
    if not s or len(s) > 200:
        return None
    s = s.replace("\u2212", "-").replace("\\$", "").replace("$", "")
    # digit-group commas only where written as such: "1,000", "1{,}000", "11,\\! 111"; a comma
    # followed by a space separates numbers ("32, 349" is two numbers, not 32349)
    s = _GROUP_COMMA.sub(",", s)
    if _SPACED_COMMA.search(s):
        return None
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
