"""The ``science`` verifier: which choice of a multiple-choice question a reply picks.

The gold (:func:`encode_gold`) is a JSON object with the right letter and every choice's text,
``{"answer": "C", "choices": {"A": "...", "B": "...", "C": "...", "D": "..."}}``, so the verifier
can tell a choice stated by its text from a wrong choice's text; a bare letter (``C``, ``(C)``)
is accepted too (``ssb verify --gold C``) and then only letters count.

What a reply chooses (the **last explicit choice counts**):

* explicit statements, in order of position: a ``\\boxed{...}`` (``\\boxed{C}``, ``\\boxed{(C)}``,
  ``\\boxed{\\text{C}}``, or a choice's exact text in the box); an answer marker followed by a
  choice ("The answer is (C)", "Answer: C", "The correct option is C", "Final answer: C", "I
  choose C"); a choice said to be right ("(C) is correct", "C is the best answer").  The letter
  may be followed by its text ("Answer: (C) Planetary days will become shorter.").  A marker
  with nothing after it on its line ("The correct answer is:") takes the next non-empty line
  when that line is a choice alone or a choice's text (not when it starts the list of choices).
  A marker or box that names no choice ("The answer is clear") is not a statement of a choice.
* a letter alone (``\\boxed{C}``, "Answer: C") is that letter even where a choice's text is a
  letter (a choice "C" for carbon).  Texts are compared in lower case and words only; choices
  that are then equal ("+1" / "-1", "Rr" / "rr", "-10°C" / "10°C") are told apart by the text
  as written, case and signs kept.
* without ``strict`` only (rollouts, eval, ``ssb verify``), when no explicit statement names a
  choice: the last non-empty line, when it is a choice alone ("C", "(C).", "Option C", "**C**",
  "C. <its text>"), a short line naming exactly one letter ("Therefore, (C)."), or a line that
  states exactly one choice's exact text ("So planetary days will become shorter.").

Wrong, with the reason in ``Verdict.detail``: no choice at all; a final statement that names two
different choices ("\\boxed{A} or \\boxed{B}", "Answer: A, B, C and D", a letter followed by a
*different* choice's text); a letter that is not one of the question's choices; a reply that
ends with the list of choices quoted back (the list followed by one of its lines again is that
choice).  Never a choice: a letter inside a word ("Carbon"), a capital used as an article ("The
answer is A metal spoon" -- unless that is a choice's text), a negated letter ("not A", "isn't
A", "cannot be A", "neither A nor B"), and every letter of a list that starts with a negated one
("not A, B or D"; but "not A, C is correct" names C).

Bounded: the reply's last :data:`MAX_CHARS` characters are read with linear regular expressions
(no nested quantifiers), and only the last :data:`MAX_STATEMENTS` statements of each kind are
parsed, so a verdict takes milliseconds (tens at worst, for hostile input); nothing is
executed or evaluated.  ``timeout`` is accepted for the protocol and never needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ssb.answers import boxes, strip_text_wrappers
from ssb.records import Verdict

MAX_CHARS = 20_000  # of the reply's end; a reply is a few thousand characters at most
MAX_CONTENT = 300  # characters read after an answer marker
MAX_STATEMENTS = 64  # of each kind (boxes, markers, "X is correct"), the last ones
ANY_LETTERS = "ABCDEFGHIJ"  # what a letter can be when the gold lists no choices


# -- the gold ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gold:
    answer: str
    choices: dict[str, str]  # label -> text, in the question's order; empty: a bare-letter gold

    @property
    def labels(self) -> str:
        return "".join(self.choices) if self.choices else ANY_LETTERS


def encode_gold(answer: str, choices: dict[str, str]) -> str:
    """The gold string a dataset puts in ``Problem.gold``."""
    return json.dumps({"answer": answer, "choices": choices}, ensure_ascii=False)


_BARE_GOLD = re.compile(r"\s*\(?\s*([A-Za-z])\s*\)?\s*\.?\s*")


def parse_gold(gold: str) -> Gold:
    """A JSON gold (:func:`encode_gold`) or a bare letter; ValueError names what is wrong."""
    text = (gold or "").strip()
    if not text.startswith("{"):
        m = _BARE_GOLD.fullmatch(text)
        if not m:
            raise ValueError(f"gold must be a letter or a JSON object with 'answer' and "
                             f"'choices', got {text[:60]!r}")
        return Gold(answer=m.group(1).upper(), choices={})
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"gold is not valid JSON ({exc.msg})") from None
    answer, choices = data.get("answer"), data.get("choices")
    if not isinstance(answer, str) or len(answer.strip()) != 1 or not answer.strip().isalpha():
        raise ValueError("gold 'answer' must be one letter")
    if (not isinstance(choices, dict) or not choices
            or not all(isinstance(k, str) and len(k) == 1 and k.isupper() for k in choices)
            or not all(isinstance(v, str) for v in choices.values())):
        raise ValueError("gold 'choices' must map capital letters to texts")
    answer = answer.strip().upper()
    if answer not in choices:
        raise ValueError(f"gold answer {answer!r} is not among the choices {''.join(choices)}")
    return Gold(answer=answer, choices=dict(choices))


# -- text helpers --------------------------------------------------------------------------------

_MARKDOWN = re.compile(r"\*\*|__|`|\\\(|\\\)|\\\[|\\\]|(?<!\\)\$")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def _clean(s: str) -> str:
    return _MARKDOWN.sub("", strip_text_wrappers(s))


def norm(s: str) -> str:
    """Lower case, words only: how choice texts are compared."""
    s = strip_text_wrappers(s).lower().replace("’", "'").replace("'", "")
    return _NON_WORD.sub(" ", s).strip()


_SPACES = re.compile(r"\s+")
_EDGE_PUNCT = " \t.,;:!?\"'“”‘’"


def fine(s: str) -> str:
    """Case, signs and symbols kept (spacing, markdown and edge punctuation aside): what tells
    apart choices that :func:`norm` makes equal ("+1" / "-1", "Rr" / "rr", "-10°C" / "10°C")."""
    s = _clean(s).replace("\u2212", "-").replace("’", "'")
    return _SPACES.sub(" ", s).strip(_EDGE_PUNCT)


def same_text(s: str, gold: Gold) -> list[str]:
    """The choices whose text ``s`` is: equal after :func:`norm`; when several are, the ones
    equal after :func:`fine` (if none is, all of them: ``s`` does not tell them apart)."""
    n = norm(s)
    if not n:
        return []
    found = [label for label, text in gold.choices.items() if norm(text) == n]
    if len(found) > 1:
        f = fine(s)
        finer = [label for label in found if fine(gold.choices[label]) == f]
        return finer or found
    return found


# A letter: "(C)" in either case, or a capital standing alone (not inside a word, not a LaTeX
# command's first letter).
_REF = re.compile(r"\(\s*([A-Ja-j])\s*\)|(?<![\w'’\\])([A-J])(?![\w'’])")
# Words that may follow a bare capital letter that is a choice ("A or B", "C because ...");
# any other lower-case word makes it an article or a pronoun ("A metal spoon", "I think").
_LETTER_FOLLOWERS = {"or", "and", "nor", "is", "was", "because", "since", "as", "would", "seems",
                     "appears", "fits", "matches", "best", "only", "then", "for", "so"}
_NEXT_WORD = re.compile(r"\s+([a-z]+)")
_NEGATION = re.compile(r"(?:\bnot|n['’]t|\bcannot|\bnever|\bneither|\bnor|\bexcept|\bexcluding"
                       r"|\bno)\s+(?:be\s+)?(?:(?:the\s+)?(?:options?|choices?|answers?)\s+)?$",
                       re.I)
_GROUP_GAP = re.compile(r"\s*(?:,|/|&|;|\bor\b|\band\b|,\s*or\b|,\s*and\b|\band/or\b)?\s*"
                        r"(?:(?:options?|choices?)\s*)?", re.I)
_LIST_GAP = re.compile(r"\s*(?:,|/|\bor\b|\band\b|\bnor\b|,\s*(?:or|and|nor)\b)?\s*", re.I)
_LIST_JOIN = re.compile(r"\b(?:or|and|nor)\b", re.I)
_REST_SEPARATOR = re.compile(r"^(?:[\s.:)\]–—,]|-(?![\d.]))*")  # "C - text", not "C) -1"
_LONE = re.compile(r"\s*[(\[]?\s*([A-Ja-j])\s*[)\]]?\s*[.)]?\s*")


@dataclass
class _Ref:
    letter: str
    start: int
    end: int
    negated: bool = False  # "not A": dropped by _refs


def _refs(c: str, labels: str) -> list[_Ref]:
    """Letters named in ``c`` (negated ones dropped, with the letters listed after a negated one:
    "not A, B or D", "cannot be A or B"), in order."""
    found: list[_Ref] = []
    for m in _REF.finditer(c):
        letter = m.group(1) or m.group(2)
        if m.group(2):  # a bare capital: not an article or pronoun
            nxt = _NEXT_WORD.match(c, m.end())
            if nxt and nxt.group(1) not in _LETTER_FOLLOWERS:
                continue
            if letter == "I" and "I" not in labels:
                continue
        found.append(_Ref(letter.upper(), m.start(), m.end(),
                          bool(_NEGATION.search(c[max(0, m.start() - 30):m.start()]))))
    out: list[_Ref] = []
    for group in _groups(c, found, _LIST_GAP):  # one list of letters at a time ("A, B or D")
        joined = any(_LIST_JOIN.search(c, a.end, b.start) for a, b in zip(group, group[1:]))
        if not (group[0].negated and joined):  # "not A, B or D": none ("not A, C is right": C)
            out += [ref for ref in group if not ref.negated]
    return out


def _groups(c: str, refs: list[_Ref], gap: re.Pattern = _GROUP_GAP) -> list[list[_Ref]]:
    """Letters joined by "or", "and", commas, slashes (what ``gap`` matches between them) are
    one group ("A or B", "A, B, C")."""
    groups: list[list[_Ref]] = []
    for r in refs:
        if groups and gap.fullmatch(c, groups[-1][-1].end, r.start):
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _distinct(letters) -> list[str]:
    return list(dict.fromkeys(letters))


def _text_matches(c: str, gold: Gold) -> list[str]:
    """Choices whose exact text occurs in ``c`` (words, not negated, not inside a longer
    choice's match)."""
    if not gold.choices:
        return []
    hay = f" {norm(c)} "
    spans: dict[str, list[tuple[int, int]]] = {}
    for label, text in gold.choices.items():
        needle = norm(text)
        if not needle:
            continue
        start = hay.find(f" {needle} ")
        while start != -1:
            before = hay[max(0, start - 30):start + 1]
            if not _NEGATION.search(before.rstrip() + " "):
                spans.setdefault(label, []).append((start, start + len(needle) + 2))
            start = hay.find(f" {needle} ", start + 1)

    def inside_another(label: str, s: int, e: int) -> bool:
        return any(a <= s and e <= b and (a, b) != (s, e)
                   for other, found in spans.items() if other != label for a, b in found)

    # "heat energy" also contains the choice "heat": only the longer one is stated
    found = [label for label, own in spans.items()
             if not all(inside_another(label, s, e) for s, e in own)]
    # choices equal after norm ("+1" / "-1", "Rr" / "rr"): the ones written as such, when any
    fc = fine(c)
    for label in list(found):
        twins = [x for x in found if norm(gold.choices[x]) == norm(gold.choices[label])]
        if len(twins) > 1:
            written = [x for x in twins if _written(gold.choices[x], fc)]
            if written and label not in written:
                found.remove(label)
    return found


def _written(text: str, fc: str) -> bool:
    """``text`` occurs in ``fc`` as written (case and signs kept), not inside a longer token."""
    pattern = r"(?<![\w+\-−])" + re.escape(fine(text)) + r"(?!\w)"
    return re.search(pattern, fc) is not None


def choices_named(content: str, gold: Gold, *, backward: bool = False,
                  text_search: bool = True) -> list[str]:
    """The choices one statement names: its exact text as a whole; else its first group of
    letters (``backward``: its last group), a letter followed by a different choice's text
    naming both; else (``text_search``) the choices whose exact text it contains."""
    c = _clean(content).strip()
    nc = norm(c)
    if not nc:
        return []
    lone = _LONE.fullmatch(c)
    if lone and (lone.group(1).islower() or lone.group(1) in gold.labels):
        # a letter alone is a letter, even where a choice's text is a letter ("A. C": carbon)
        return [lone.group(1).upper()]
    exact = same_text(c, gold)
    if exact:
        return exact
    groups = _groups(c, _refs(c, gold.labels))
    if groups:
        if not backward and gold.choices:  # a letter and a choice's text: "(C) H:O:H -> H_{2}O"
            first = groups[0][0]
            texts = same_text(_REST_SEPARATOR.sub("", c[first.end:]), gold)
            if texts:  # its own text names it; "(B) <the text of C>" names two choices
                return [first.letter] if first.letter in texts else [first.letter] + texts
        group = groups[-1] if backward else groups[0]
        return _distinct(r.letter for r in group)
    return _text_matches(c, gold) if text_search else []


# -- statements ----------------------------------------------------------------------------------

_MARKER = re.compile(
    r"\b(?:(?:the|my|our)\s+)?(?:final\s+|correct\s+|best\s+|right\s+|most\s+likely\s+)?"
    r"(?:answer|choice|option)(?:\*\*|__)?\s*"  # "**Answer**: C"
    r"(?:(?:is|would\s+be|must\s+be|should\s+be|will\s+be)(?![\w'’])|=|:)"
    r"|\bi\s+(?:choose|pick|select|go\s+with)\b|\bfinal\s+answer\b",
    re.I)
_IS_RIGHT = re.compile(
    r"\b(?:is|are)\s+(?:the\s+)?(?:correct|right|best|final)\b(?:\s+(?:answer|choice|option)\b)?"
    r"|\bis\s+the\s+answer\b",
    re.I)
_LIST_LINE = re.compile(r"\s*(?:[-*]\s*)?\(?([A-J])\s*[.):]\s*\S")
_ALONE = re.compile(r"\s*(?:[-*>#]+\s*)?(?:(?:the\s+)?(?:option|choice)\s*)?\(?\s*([A-Ja-j])\s*\)?"
                    r"(?:\s*[.):\-]\s*(.*?)|\s*)[.!]?\s*", re.I)
_BOX_START = re.compile(r"\s*\$?\s*\\(?:boxed|fbox)(?![A-Za-z])")
_SENTENCE_END = re.compile(r"[.!?]\s+(?=[A-Z])")
_BOX_JOIN = re.compile(r"\b(?:and|or)\b|,|;")


@dataclass
class _Statement:
    kind: str  # "boxed", "marker", "is right"
    start: int
    end: int
    named: list[str]


def _line_end(t: str, i: int) -> int:
    j = t.find("\n", i)
    return len(t) if j == -1 else j


_NEXT_LINE = re.compile(r"[ \t]*\n\s{0,200}?(\S[^\n]{0,%d})" % MAX_CONTENT)


def _next_line(t: str, i: int) -> tuple[str, int] | None:
    """The next non-empty line after position ``i`` (a line end) and where it ends, unless it
    starts a list of choices ("A. fog", "B. rain", ...)."""
    m = _NEXT_LINE.match(t, i)
    if m is None:
        return None
    after = _NEXT_LINE.match(t, _line_end(t, m.end(1)))
    if _LIST_LINE.match(m.group(1)) and after and _LIST_LINE.match(after.group(1)):
        return None
    return m.group(1), m.end(1)


def _statements(t: str, gold: Gold) -> list[_Statement]:
    """The explicit statements of ``t`` that name a choice, by position (only the last
    :data:`MAX_STATEMENTS` of each kind are read: the last one that names a choice counts)."""
    out: list[_Statement] = []
    for start, end, content in boxes(t)[-MAX_STATEMENTS:]:
        out.append(_Statement("boxed", start, end, choices_named(content, gold)))
    for m in list(_MARKER.finditer(t))[-MAX_STATEMENTS:]:
        line_end = _line_end(t, m.end())
        end = min(line_end, m.end() + MAX_CONTENT)
        tail = t[m.end():end]
        if _BOX_START.match(tail):
            continue  # "The answer is \boxed{C}": the box is the statement
        named = choices_named(tail, gold)
        if not named and not norm(tail):  # "The answer is:" and the choice on the next line
            found = _next_line(t, line_end)
            if found is not None:
                line, end = found
                if _BOX_START.match(line):
                    continue
                line = _clean(line).strip()
                named = _alone(line, gold) or same_text(line, gold)
        out.append(_Statement("marker", m.start(), end, named))
    for m in list(_IS_RIGHT.finditer(t))[-MAX_STATEMENTS:]:
        line_start = t.rfind("\n", 0, m.start()) + 1
        head = t[max(line_start, m.start() - 120):m.start()]
        sentences = _SENTENCE_END.split(head)
        head = sentences[-1] if sentences else head
        out.append(_Statement("is right", m.start() - len(head), m.end(),
                              choices_named(head, gold, backward=True, text_search=False)))
    out.sort(key=lambda s: (s.end, s.start))
    return [s for s in out if s.named]


# -- the reading ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """What a reply chooses: ``choice`` (a letter), or None with ``reason``."""

    choice: str | None
    named: tuple[str, ...] = ()
    how: str = ""
    reason: str | None = None


SHORT_LINE = 60


def _final_lines(t: str) -> list[str]:
    return [line for line in (_clean(x).strip() for x in t.splitlines()) if line]


def _alone(line: str, gold: Gold) -> list[str]:
    """The choices a line that is a choice alone names ("C", "(C).", "Option C", "C. <its
    text>"; a letter with another choice's text names both); [] for any other line."""
    m = _ALONE.fullmatch(line)
    if not m or not (m.group(1).isupper() or len(line) <= 4):
        return []
    named = [m.group(1).upper()]
    if m.group(2) and gold.choices:
        texts = same_text(m.group(2), gold)
        if named[0] not in texts:
            named += texts
    return named


def read_choice(response: str, gold: Gold, *, strict: bool = False) -> Reading:
    """The reply's choice (see the module docstring)."""
    t = (response or "")[-MAX_CHARS:]
    statements = _statements(t, gold)
    if statements:
        final = statements[-1]
        named = list(final.named)
        if final.kind == "boxed":  # "\boxed{A} or \boxed{B}": one statement of two choices
            for prev in reversed(statements[:-1]):
                gap = t[prev.end:final.start] if prev.end <= final.start else ""
                if prev.kind != "boxed" or not (
                        len(gap) < 10 or (len(gap) < 70 and _BOX_JOIN.search(gap))):
                    break
                named = _distinct(prev.named + named)
                final = prev
        return _decide(named, final.kind, gold)
    if strict:
        return Reading(None, reason="no explicit choice (\\boxed{X}, 'the answer is X' or "
                                    "'Answer: X')")
    lines = _final_lines(t)
    if not lines:
        return Reading(None, reason="empty reply")
    last = lines[-1]
    listed = [m.group(1) for m in (_LIST_LINE.match(x) for x in lines[-5:]) if m]
    trailing = 0
    for line in reversed(lines):
        if not _LIST_LINE.match(line):
            break
        trailing += 1
    block = [_LIST_LINE.match(x).group(1) for x in lines[len(lines) - trailing:]]
    restated = (len(block) >= 3 and block[-1] in block[:-1]
                and len(set(block[:-1])) == len(block) - 1)  # the list, then one of it again
    if trailing >= 2 and len(set(listed)) >= 2 and not restated:
        return Reading(None, named=tuple(_distinct(listed)),
                       reason="ends with a list of choices, not one choice")
    alone = _alone(last, gold)
    if alone:
        return _decide(alone, "last line", gold)
    if len(last) <= SHORT_LINE:
        groups = _groups(last, _refs(last, gold.labels))
        if groups:
            named = _distinct(r.letter for g in groups for r in g)
            return _decide(named, "last line", gold)
    named = choices_named(last, gold)
    if named:
        return _decide(named, "choice text", gold)
    return Reading(None, reason="no choice found (no \\boxed{X}, no 'the answer is X', and the "
                                "last line names no choice)")


def _decide(named: list[str], how: str, gold: Gold) -> Reading:
    named = _distinct(named)
    if len(named) > 1:
        return Reading(None, named=tuple(named), how=how,
                       reason=f"names {len(named)} different choices ({', '.join(named)}) as "
                              "its final answer")
    letter = named[0]
    if letter not in gold.labels:
        return Reading(letter, named=(letter,), how=how,
                       reason=f"{letter} is not one of the choices ({', '.join(gold.labels)})")
    return Reading(letter, named=(letter,), how=how)


class ScienceVerifier:
    """Multiple choice: the reply's last explicit choice against the gold letter."""

    domain = "science"
    # Curate keeps a problem only when at least this many rollouts are correct (unless
    # ``--min-correct`` says otherwise): with four options a single right rollout is often a
    # lucky guess (see the plugin README).
    min_correct = 2

    def extract(self, response: str, strict: bool = False) -> str | None:
        """The chosen letter, read without the choice texts (no gold here)."""
        reading = read_choice(response, Gold(answer="A", choices={}), strict=strict)
        return reading.choice if reading.reason is None else None

    def verify(self, response: str, gold: str, *, strict: bool = False,
               timeout: float | None = None, **_: Any) -> Verdict:
        try:
            parsed = parse_gold(gold)
        except ValueError as exc:
            return Verdict(extracted=None, correct=False, error=f"bad gold: {exc}")
        reading = read_choice(response, parsed, strict=strict)
        if reading.reason is not None:
            return Verdict(extracted=reading.choice, correct=False, detail=reading.reason)
        return Verdict(extracted=reading.choice, correct=reading.choice == parsed.answer)
