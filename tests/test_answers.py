"""Final-answer extraction edge cases (ssb.answers)."""

import time

import pytest

from ssb.answers import (Extraction, answer_is, extract_answer, last_boxed, last_number,
                         parse_number)


@pytest.mark.parametrize("text, expected", [
    (r"so \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"first \boxed{1} then \boxed{2}", "2"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped braces do not close the box
    (r"\fbox{7}", "7"),
    (r"\boxed{3} and an unclosed \boxed{4", "3"),
    (r"\boxed 5", "5"),
    (r"The answer is $\boxed{12}$.", "12"),
    (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"put it in \boxed{} ... \boxed{5} then \boxed{}", "5"),  # empty boxes carry no answer
    (r"\boxedfoo{3}", None),
    ("no box at all", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_last_box_wins_between_boxed_and_fbox():
    assert last_boxed(r"\boxed{1} \fbox{2}") == "2"
    assert last_boxed(r"\fbox{1} \boxed{2}") == "2"


@pytest.mark.parametrize("text, expected", [
    ("The answer is 42.", "42"),
    ("the answer is 3.5 dollars.", "3.5 dollars"),
    ("**Final Answer**: 42", "42"),
    ("Final answer: $x=5$", "x=5"),
    ("#### 1,234", "1,234"),
    ("answer is 1 and later the answer is 7", "7"),
    ("nothing here", None),
])
def test_answer_is(text, expected):
    assert answer_is(text) == expected


def test_last_number():
    assert last_number("costs 1,234,567.5 or 3 dollars") == "3"
    assert last_number("total 1,234,567.5") == "1234567.5"
    assert last_number(r"\{1,2\}") == "2"
    assert last_number("x = -3,") == "-3"
    assert last_number("none") is None


def test_fallbacks_are_switchable():
    text = "We get 5 apples, so the answer is 7 apples. Later 9."
    assert extract_answer(text) == "7 apples"
    assert extract_answer(text, Extraction(answer_is=False)) is None
    assert extract_answer(text, Extraction(answer_is=False, last_number=True)) == "9"
    assert extract_answer(text + r" \boxed{8}", Extraction().strict()) == "8"
    assert extract_answer(text, Extraction().strict()) is None
    assert extract_answer("") is None and extract_answer(None) is None


@pytest.mark.parametrize("text, expected", [
    ("$1,000.00", "1000"), (r"10\%", "10"), (r"\$18", "18"), ("1{,}000", "1000"),
    ("\u22125", "-5"), ("18 eggs", "18"), (r"18\text{ eggs}", "18"), (".5", "0.5"),
    ("5.", "5"), ("3/4", None), ("1,2", None), (r"\frac{1}{2}", None), ("", None),
])
def test_parse_number(text, expected):
    value = parse_number(text)
    assert (value is None) if expected is None else (value == __import__("decimal").Decimal(expected))


def test_hostile_text_is_scanned_in_linear_time():
    hostile = [r"\boxed{" * 30000, "{" * 200000, "}" * 200000, "\\" * 100001, "1," * 100000]
    start = time.perf_counter()
    for text in hostile:
        extract_answer(text, Extraction(last_number=True))
    assert time.perf_counter() - start < 5.0
    assert last_boxed(r"\boxed{" * 30000) is None
