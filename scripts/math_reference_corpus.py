"""Build tests/data/math_agreement.jsonl: labelled (gold, response) cases for the math grader.

The math domain's grading is measured against the field's reference grader, the math-verify
library (huggingface/Math-Verify).  Two sources:

1. math-verify's own test suite: its ``pytest.mark.parametrize`` lists of (gold, prediction,
   verdict) are read *as data* (``ast.literal_eval``; nothing from the checkout is imported or
   run).  Cases whose verdict depends on a non-default option (``precision`` other than 6,
   ``strict=False``, ``allow_set_relation_comp=True``) are skipped: ssb grades with math-verify's
   defaults.  Golds stay exactly as the tests write them (``"$9$"``, ``"\\boxed{...}"``, whole
   solutions): the math verifier reads a gold written that way like a response.
2. ssb's own cases, one group per class of disagreement in issue 13 (``OWN_CASES``); their
   ``reference`` is math-verify's verdict, computed here with the installed library.

Each line: ``{"gold", "response", "expected", "reference", "source", "class"[, "differs"]}``.
``reference`` is math-verify's verdict; ``expected`` is ssb's intended verdict, equal to it except
where ``differs`` says why ssb deliberately grades otherwise (``DIFFERS``; see
tests/data/README.md).

Usage: python scripts/math_reference_corpus.py MATH_VERIFY_CHECKOUT [COMMIT] > tests/data/math_agreement.jsonl
(needs ``math-verify`` importable for the reference verdicts of ssb's own cases).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

# Test files whose parametrized cases are (gold, pred, expected[, option]) comparisons.
FILES = ["test_all.py", "test_boxed.py", "test_numina_cases.py", "test_open_thoughts.py",
          "test_yujianll.py", "test_strict.py"]
DEFAULTS = {"precision": 6, "strict": True, "allow_set_relation_comp": False}

FREE_PROSE = ("free prose: no box, no answer marker and not a lone formula; ssb leaves it "
              "ungraded on purpose, math-verify grades its last number or formula")
DECIMAL_COMMA = ("decimal comma: in LaTeX answers a comma between digits separates list items "
                 "or groups thousands, so ssb never reads it as a decimal point")
LAST_STATEMENT = ("last statement wins: math-verify ranks any box above a later 'The final answer "
                  "is X.' (unless 'I hope it is correct' follows); ssb takes the last statement")
SENTENCES = ("separate sentences: math-verify joins two boxes fewer than 70 characters apart when "
             "any comma lies between them; ssb not when a sentence ends between them")

# math-verify test cases that ssb deliberately grades otherwise, by source id (file::test[i]).
DIFFERS = {
    "tests/test_all.py::test_number_extraction[5]": DECIMAL_COMMA,
    "tests/test_all.py::test_number_extraction[6]": DECIMAL_COMMA,
    **{f"tests/test_all.py::test_number_extraction[{i}]": FREE_PROSE for i in (7, 13, 14, 15, 16)},
    **{f"tests/test_all.py::test_relations_math[{i}]": FREE_PROSE for i in (0, 1, 3, 4, 7)},
    **{f"tests/test_all.py::test_matrix_extraction[{i}]": FREE_PROSE for i in range(1, 7)},
    **{f"tests/test_all.py::test_math_extraction_edge_cases[{i}]": FREE_PROSE for i in (0, 1, 2)},
    "tests/test_all.py::test_math_extraction_additional_cases[8]": FREE_PROSE,
}

# ssb's own cases: (gold, response, ssb's verdict, class[, why ssb differs from math-verify]);
# one group per class of issue 13.
SUB = (r"First CD: $0.04 \cdot 10,000 \cdot \frac{1}{2} = \boxed{200}$. Second CD: "
       r"$0.05 \cdot 10,200 \cdot \frac{1}{2} = \boxed{255}$, so after a year Dr. Zaius has "
       r"$10,200 + 255$ dollars.")
OWN_CASES = [
    # after an answer marker: the answer, not the rest of the sentence
    ("34", "Final Answer: The largest $n$ is 34.", True, "marker-sentence"),
    ("34", "Final Answer: The largest $n$ is 35.", False, "marker-sentence"),
    ("12", "Answer: There are 12 ways to seat them.", True, "marker-sentence"),
    ("12", "Answer: There are 13 ways to seat them.", False, "marker-sentence"),
    (r"\frac{1}{2}", r"Final answer: the probability is $\frac{1}{2}$.", True, "marker-sentence"),
    (r"\frac{1}{2}", r"Final answer: the probability is $\frac{1}{3}$.", False, "marker-sentence"),
    ("7", "So the answer to part (b) is $7$.", True, "marker-sentence"),
    ("(1,2)", "**Final Answer:**\n$(1, 2)$", True, "marker-sentence"),
    ("(1,2)", "**Final Answer:**\n$(2, 1)$", False, "marker-sentence"),
    ("19", "Final Answer: The maximum number of points that could be in the domain of $f(x)$ "
          "is 19.", True, "marker-sentence"),
    ("6", "The answer is: the sum of the roots equals 6.", True, "marker-sentence"),
    # the last answer statement of whatever kind wins over an earlier boxed value
    ("10455", SUB + " The final answer is $10,455$.", True, "last-statement", LAST_STATEMENT),
    ("255", SUB + " The final answer is $10,455$.", False, "last-statement", LAST_STATEMENT),
    ("10455", SUB + " Final Answer: The final answer is $10,455$. I hope it is correct.", True,
     "last-statement"),
    ("10455", SUB + " Therefore the answer is 10455.", True, "last-statement", LAST_STATEMENT),
    ("7", r"The answer is 5. Wait, let me recheck step two. It gives $\boxed{7}$.", True,
     "last-statement"),
    ("5", r"The answer is 5. Wait, let me recheck step two. It gives $\boxed{7}$.", False,
     "last-statement"),
    ("12", r"The answer is $\boxed{12}$.", True, "last-statement"),
    ("12", r"So $x = \boxed{12}$. The final answer is $\boxed{12}$.", True, "last-statement"),
    # a weaker mention of "answer" after the box is not a statement of it
    ("44", r"Therefore, $17^{-1}\equiv \boxed{44}\pmod{83}$.  We may check our answer: "
          r"$17\cdot 44 = 748 = 9\cdot 83+1 \equiv 1\pmod{83}$, so our answer is correct.",
     True, "last-statement"),
    ("7", r"\boxed{7}. This answer is correct.", True, "last-statement"),
    # several boxes stating one multi-part answer: graded as the set/tuple they state
    ("2, 3", r"So $x = \boxed{2}$ or $x = \boxed{3}$.", True, "multi-box"),
    (r"\{2, 3\}", r"So $x = \boxed{2}$ or $x = \boxed{3}$.", True, "multi-box"),
    ("3", r"So $x = \boxed{2}$ or $x = \boxed{3}$.", False, "multi-box"),
    ("(2,2),(6,2)", r"The solutions are $\boxed{(2,2)}$ and $\boxed{(6,2)}$.", True,
     "multi-box"),
    ("(6,2),(2,2)", r"The solutions are $\boxed{(2,2)}$ and $\boxed{(6,2)}$.", True,
     "multi-box"),
    (r"\{(2,2),(6,2)\}", r"The solutions are $\boxed{(2,2)}$ and $\boxed{(6,2)}$.", True,
     "multi-box"),
    ("(2,2)", r"The solutions are $\boxed{(2,2)}$ and $\boxed{(6,2)}$.", False, "multi-box"),
    ("1,-2", r"The integers are \boxed{-2} and \boxed{1}.", True, "multi-box"),
    ("1,-3", r"The integers are \boxed{-2} and \boxed{1}.", False, "multi-box"),
    ("-2", r"Step one gives \boxed{1}, which we now use to find the remaining unknown value of "
          r"the expression: \boxed{-2}", True, "multi-box"),
    ("2", r"\boxed{2}. \boxed{2}", True, "multi-box"),
    ("10455", r"so the subtotal is \boxed{255}. Then, adding the interest, \boxed{10455}", True,
     "multi-box", SENTENCES),
    # digit-group commas only when well formed and unspaced
    ("32349", r"is $\boxed{32, 349}$", False, "commas"),
    ("32349", r"is $\boxed{32,349}$", True, "commas"),
    ("32349", r"is $\boxed{32,\! 349}$", True, "commas"),
    ("32349", r"is $\boxed{32{,}349}$", True, "commas"),
    ("32, 349", r"is $\boxed{32, 349}$", True, "commas"),
    ("1234", r"\boxed{1,23,4}", False, "commas"),
    ("10455", "The final answer is 10, 455.", False, "commas"),
    ("58500", r"\boxed{58,500}", True, "commas"),
    ("11111111100", r"\boxed{11,\! 111,\! 111,\! 100}", True, "commas"),
    # free prose with no answer marker: deliberately ungraded (math-verify takes its last number)
    ("12", "Multiplying 3 by 4 we get 12, so Tom has 12 apples.", False, "free-prose",
     FREE_PROSE),
    ("6", "Half of 12 is 6, which is what remains.", False, "free-prose", FREE_PROSE),
]


def _call_options(fn: ast.FunctionDef) -> dict:
    """Keyword options of the compare_strings(...) call in a test body (names or constants)."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "compare_strings":
            return {kw.arg: (kw.value.id if isinstance(kw.value, ast.Name)
                             else ast.literal_eval(kw.value)) for kw in node.keywords}
    return {}


def cases(root: Path, sha: str | None = None):
    if sha is None:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    sha = (sha or "unknown")[:12]
    for name in FILES:
        tree = ast.parse((root / "tests" / name).read_text(encoding="utf-8"))
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            for deco in fn.decorator_list:
                if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize"):
                    continue
                argnames = [a.strip() for a in ast.literal_eval(deco.args[0]).split(",")]
                if not {"gold", "pred"} <= set(argnames):
                    continue
                options = _call_options(fn)
                for i, element in enumerate(deco.args[1].elts):
                    try:
                        values = dict(zip(argnames, ast.literal_eval(element)))
                    except ValueError:  # f-strings computed at import time: not data
                        continue
                    label = values.get("expected", values.get("result"))
                    resolved = {k: values.get(v, v) if isinstance(v, str) else v
                                for k, v in options.items() if k in DEFAULTS}
                    if any(resolved.get(k, d) != d for k, d in DEFAULTS.items()):
                        continue
                    key = f"tests/{name}::{fn.name}[{i}]"
                    case = {"gold": values["gold"], "response": values["pred"],
                            "expected": bool(label) and key not in DIFFERS,
                            "reference": bool(label), "source": f"math-verify@{sha} {key}",
                            "class": "math-verify tests"}
                    if key in DIFFERS:
                        case["differs"] = DIFFERS[key]
                    yield case


def own_cases():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # the configuration of math-verify's own tests (compare_strings)
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    for i, (gold, response, expected, group, *why) in enumerate(OWN_CASES):
        reference = bool(verify(parse("$" + gold + "$", config), parse(response, config)))
        case = {"gold": gold, "response": response, "expected": expected,
                "reference": reference, "source": f"ssb issue 13 [{i}]", "class": group}
        if reference != expected:
            if not why:  # a new, undocumented difference: decide, then document it
                raise SystemExit(f"math-verify disagrees with own case {i}: {case}")
            case["differs"] = why[0]
        yield case


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python scripts/math_reference_corpus.py MATH_VERIFY_CHECKOUT [COMMIT]",
              file=sys.stderr)
        return 2
    for case in cases(Path(argv[1]), argv[2] if len(argv) == 3 else None):
        print(json.dumps(case, ensure_ascii=False))
    for case in own_cases():
        print(json.dumps(case, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
