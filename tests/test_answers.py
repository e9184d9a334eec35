"""Final-answer extraction edge cases (ssb.answers)."""

import time

import pytest

from ssb.answers import (Extraction, answer_is, extract_answer, final_boxed, last_boxed,
                         last_math_span, last_number, parse_number, whole_answer)


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


@pytest.mark.parametrize("text, expected", [
    # math-verify's rule: adjacent boxes (< 10 characters apart, or < 70 with and/or/,/;) join
    (r"x = \boxed{2} or x = \boxed{3}", "2,3"),
    (r"$\boxed{(2,2)}$ and $\boxed{(6,2)}$", "(2,2),(6,2)"),
    (r"\boxed{1} papers and \boxed{2} bins", "1,2"),
    (r"\boxed{1} no no no no no \boxed{2}", "2"),  # far apart, no separator
    (r"\boxed{2}. \boxed{2}", "2"),  # the same answer twice is one answer
    (r"subtotal \boxed{255}. Then, adding the second account's interest, \boxed{10455}", "10455"),
    ("no box", None),
])
def test_final_boxed_joins_a_multi_part_answer(text, expected):
    found = final_boxed(text)
    assert (found[2] if found else None) == expected
    assert last_boxed(r"x = \boxed{2} or x = \boxed{3}") == "3"  # the single last box is kept


MATH = Extraction(multi_box=True, whole=True)


@pytest.mark.parametrize("text, expected", [
    # after a marker: the answer, not the rest of the sentence
    ("Final Answer: The largest $n$ is 34.", "34"),
    ("Final Answer: The maximum number of points that could be in the domain of $f(x)$ is 19.",
     "19"),
    ("Final Answer: Jane started growing Sphere 3 hours ago. I hope it is correct.", "3"),
    ("Answer: $x = 5$, since the other root is negative.", "x = 5"),
    ("The answers are $2$ and $3$.", "2,3"),
    ("**Final Answer:**\n$(1, 2)$", "(1, 2)"),
    ("So the answer to part (b) is $7$.", "7"),
    ("Thus $x <= 2$ is our answer.", "x <= 2"),
    # the last answer statement of whatever kind wins ...
    (r"so the subtotal is \boxed{255}. Then the final answer is $10,455$.", "10,455"),
    (r"The answer is 5. Wait, recheck: it is $\boxed{7}$.", "7"),
    # ... when it states something (weaker mentions of "answer" do not replace a box)
    (r"\boxed{7}. This answer is correct.", "7"),
    (r"so $\boxed{44}$. We may check our answer: $17\cdot 44 = 748$.", "44"),
    # a response that is only a formula is its own answer; free prose has none
    (r"$\{1,3\}$", r"\{1,3\}"),
    ("-5", "-5"),
    ("28 percent", "28 percent"),
    ("Therefore $x \\geq 5$ is the solution.", None),
    ("Multiplying 3 by 4 we get 12, so Tom has 12 apples.", None),
])
def test_last_answer_statement(text, expected):
    assert extract_answer(text, MATH) == expected


def test_whole_answer_and_last_math_span():
    assert whole_answer("$$(1, +\\infty)$$") == "(1, +\\infty)"
    assert whole_answer("The answer is 5") is None
    assert last_math_span("$125$ miles") == "125"
    assert last_math_span(r"costs \$5, then $7$ and \[8\]") == "8"
    assert last_math_span("no math") is None


@pytest.mark.parametrize("text, expected", [
    ("32,349", "32349"), (r"32,\! 349", "32349"), ("32{,}349", "32349"), ("14 {, }916", "14916"),
    (r"11,\! 111,\! 111,\! 100", "11111111100"),
    ("32, 349", None), ("1,23,4", None), ("10, 455", None),  # lists, not digit groups
])
def test_digit_group_commas_only_when_well_formed_and_unspaced(text, expected):
    value = parse_number(text)
    assert (value is None) if expected is None else (value == __import__("decimal").Decimal(expected))


def test_hostile_text_is_scanned_in_linear_time():
    hostile = [r"\boxed{" * 30000, "{" * 200000, "}" * 200000, "\\" * 100001, "1," * 100000,
               "$" * 200000, "\\[" * 100000, "answer: $" * 20000, "$x$ is our answer " * 10000,
               r"\boxed{1} and " * 15000, "Final answer: " + "$a$ is " * 30000,
               r"\boxed{1} the final answer is " + "a $" * 60000]
    start = time.perf_counter()
    for text in hostile:
        extract_answer(text, Extraction(last_number=True, multi_box=True, whole=True))
        last_math_span(text)
    assert time.perf_counter() - start < 5.0
    assert last_boxed(r"\boxed{" * 30000) is None
