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
  may be followed by its text ("Answer: (C) Planetary days will become shorter.").  A marker or
  box that names no choice ("The answer is clear") is not a statement of a choice.
* without ``strict`` only (rollouts, eval, ``ssb verify``), when no explicit statement names a
  choice: the last non-empty line, when it is a choice alone ("C", "(C).", "Option C", "**C**",
  "C. <its text>"), a short line naming exactly one letter ("Therefore, (C)."), or a line that
  states exactly one choice's exact text ("So planetary days will become shorter.").

Wrong, with the reason in ``Verdict.detail``: no choice at all; a final statement that names two
different choices ("\\boxed{A} or \\boxed{B}", "Answer: A, B, C and D", a letter followed by a
*different* choice's text); a letter that is not one of the question's choices; a reply that
ends with the list of choices quoted back.  Never a choice: a letter inside a word ("Carbon"), a
capital used as an article ("The answer is A metal spoon" -- unless that is a choice's text), a
negated letter ("not A", "isn't A", "neither A nor B").

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


# A letter: "(C)" in either case, or a capital standing alone (not inside a word, not a LaTeX
# command's first letter).
_REF = re.compile(r"\(\s*([A-Ja-j])\s*\)|(?<![\w'’\\])([A-J])(?![\w'’])")
# Words that may follow a bare capital letter that is a choice ("A or B", "C because ...");
# any other lower-case word makes it an article or a pronoun ("A metal spoon", "I think").
_LETTER_FOLLOWERS = {"or", "and", "nor", "is", "was", "because", "since", "as", "would", "seems",
                     "appears", "fits", "matches", "best", "only", "then", "for", "so"}
_NEXT_WORD = re.compile(r"\s+([a-z]+)")
_NEGATION = re.compile(r"(?:\bnot|n['’]t|\bnever|\bneither|\bnor|\bexcept|\bexcluding|\bno)"
                       r"\s+(?:(?:the\s+)?(?:options?|choices?|answers?)\s+)?$", re.I)
_GROUP_GAP = re.compile(r"\s*(?:,|/|&|;|\bor\b|\band\b|,\s*or\b|,\s*and\b|\band/or\b)?\s*"
                        r"(?:(?:options?|choices?)\s*)?", re.I)
_REST_SEPARATOR = re.compile(r"^[\s.:)\]\-–—,]*")
_LONE_LOWER = re.compile(r"\s*\(?\s*([a-j])\s*\)?\s*[.)]?\s*")


@dataclass
class _Ref:
    letter: str
    start: int
    end: int


def _refs(c: str, labels: str) -> list[_Ref]:
    """Letters named in ``c`` (negated ones dropped), in order."""
    out = []
    for m in _REF.finditer(c):
        letter = m.group(1) or m.group(2)
        if m.group(2):  # a bare capital: not an article or pronoun
            nxt = _NEXT_WORD.match(c, m.end())
            if nxt and nxt.group(1) not in _LETTER_FOLLOWERS:
                continue
            if letter == "I" and "I" not in labels:
                continue
        if _NEGATION.search(c[max(0, m.start() - 30):m.start()]):
            continue
        out.append(_Ref(letter.upper(), m.start(), m.end()))
    return out


def _groups(c: str, refs: list[_Ref]) -> list[list[_Ref]]:
    """Letters joined by "or", "and", commas, slashes are one group ("A or B", "A, B, C")."""
    groups: list[list[_Ref]] = []
    for r in refs:
        if groups and _GROUP_GAP.fullmatch(c, groups[-1][-1].end, r.start):
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
    return [label for label, own in spans.items()
            if not all(inside_another(label, s, e) for s, e in own)]


def choices_named(content: str, gold: Gold, *, backward: bool = False,
                  text_search: bool = True) -> list[str]:
    """The choices one statement names: its exact text as a whole; else its first group of
    letters (``backward``: its last group), a letter followed by a different choice's text
    naming both; else (``text_search``) the choices whose exact text it contains."""
    c = _clean(content).strip()
    nc = norm(c)
    if not nc:
        return []
    exact = [label for label, text in gold.choices.items() if norm(text) == nc]
    if exact:
        return exact
    lone = _LONE_LOWER.fullmatch(c)
    if lone:
        return [lone.group(1).upper()]
    groups = _groups(c, _refs(c, gold.labels))
    if groups:
        group = groups[-1] if backward else groups[0]
        letters = _distinct(r.letter for r in group)
        if len(letters) == 1 and not backward and gold.choices:
            rest = norm(_REST_SEPARATOR.sub("", c[group[-1].end:]))
            other = [label for label, text in gold.choices.items()
                     if label != letters[0] and norm(text) and norm(text) == rest]
            letters += other  # "(B) <the text of C>": two different choices
        return letters
    return _text_matches(c, gold) if text_search else []


# -- statements ----------------------------------------------------------------------------------

_MARKER = re.compile(
    r"\b(?:(?:the|my|our)\s+)?(?:final\s+|correct\s+|best\s+|right\s+|most\s+likely\s+)?"
    r"(?:answer|choice|option)\s*(?:(?:is|would\s+be|must\s+be|should\s+be|will\s+be)(?![\w'’])"
    r"|=|:)"
    r"|\bi\s+(?:choose|pick|select|go\s+with)\b|\bfinal\s+answer\b",
    re.I)
_IS_RIGHT = re.compile(
    r"\b(?:is|are)\s+(?:the\s+)?(?:correct|right|best|final)\b(?:\s+(?:answer|choice|option)\b)?"
    r"|\bis\s+the\s+answer\b",
    re.I)
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


def _statements(t: str, gold: Gold) -> list[_Statement]:
    """The explicit statements of ``t`` that name a choice, by position (only the last
    :data:`MAX_STATEMENTS` of each kind are read: the last one that names a choice counts)."""
    out: list[_Statement] = []
    for start, end, content in boxes(t)[-MAX_STATEMENTS:]:
        out.append(_Statement("boxed", start, end, choices_named(content, gold)))
    for m in list(_MARKER.finditer(t))[-MAX_STATEMENTS:]:
        tail = t[m.end():min(_line_end(t, m.end()), m.end() + MAX_CONTENT)]
        if _BOX_START.match(tail):
            continue  # "The answer is \boxed{C}": the box is the statement
        out.append(_Statement("marker", m.start(), m.end() + len(tail),
                              choices_named(tail, gold)))
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


_LIST_LINE = re.compile(r"\s*(?:[-*]\s*)?\(?([A-J])\s*[.):]\s*\S")
_ALONE = re.compile(r"\s*(?:[-*>#]+\s*)?(?:(?:the\s+)?(?:option|choice)\s*)?\(?\s*([A-Ja-j])\s*\)?"
                    r"(?:\s*[.):\-]\s*(.*?)|\s*)[.!]?\s*", re.I)
SHORT_LINE = 60


def _final_lines(t: str) -> list[str]:
    return [line for line in (_clean(x).strip() for x in t.splitlines()) if line]


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
    if trailing >= 2 and len(set(listed)) >= 2:
        return Reading(None, named=tuple(_distinct(listed)),
                       reason="ends with a list of choices, not one choice")
    alone = _ALONE.fullmatch(last)
    if alone and (alone.group(1).isupper() or len(last) <= 4):
        letter = alone.group(1).upper()
        rest = norm(alone.group(2) or "")
        named = [letter]
        if rest and gold.choices:
            named += [label for label, text in gold.choices.items()
                      if label != letter and norm(text) == rest]
        return _decide(named, "last line", gold)
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
