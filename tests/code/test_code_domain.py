"""The code domain end to end through ssb's registry and CLI: extraction, loaders, template."""

from __future__ import annotations

import json

import pytest

from ssb_code import TEMPLATE, CodeVerifier
from ssb_code.datasets import load_humaneval, mbpp_loader
from ssb_code.extract import extract_code

# ---------------------------------------------------------------------------------------------
# Extraction


def test_last_python_block_that_defines_something_wins():
    text = ("First try:\n```python\ndef f():\n    return 1\n```\nBetter:\n```py\n"
            "def f():\n    return 2\n```\nExample:\n```python\nprint(f())\n```\n")
    assert extract_code(text) == "def f():\n    return 2\n"
    assert extract_code(text, strict=True) == "def f():\n    return 2\n"
    # no block defines anything: the last one
    assert extract_code("```python\nx = 1\n```\n```python\nx = 2\n```") == "x = 2\n"


def test_fallbacks_are_lenient_only():
    untagged = "```\ndef f():\n    return 1\n```"
    assert extract_code(untagged) == "def f():\n    return 1\n"
    assert extract_code(untagged, strict=True) is None
    unclosed = "Sure:\n```python\ndef f():\n    return 1\n"
    assert extract_code(unclosed) == "def f():\n    return 1\n"
    assert extract_code(unclosed, strict=True) is None
    bare = "def f():\n    return 1\n"
    assert extract_code(bare) == bare and extract_code(bare, strict=True) is None
    assert extract_code("The answer is 42.") is None
    assert extract_code("```text\ndef f(): pass\n```") is None  # another language
    indented = "1. Code:\n   ```python\n   def f():\n       return 1\n   ```\n"
    assert extract_code(indented) == "def f():\n    return 1\n"


def test_annotations_need_no_typing_import():
    verdict = CodeVerifier().verify(
        "```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```",
        "assert total([1, 2]) == 3\n", timeout=5)
    assert verdict.correct, verdict


# ---------------------------------------------------------------------------------------------
# Loaders


def test_humaneval_problem_shape():
    p = load_humaneval(split="all").problems[0]
    assert p.id == "HumanEval/0" and p.dataset == "humaneval"
    assert p.metadata["entry_point"] == "has_close_elements"
    assert p.gold.rstrip().endswith("check(has_close_elements)")
    assert "def check(candidate)" in p.gold
    assert p.metadata["prompt"] in p.question


def test_humaneval_local_jsonl_and_bad_rows(tmp_path):
    good = {"task_id": "t/0", "prompt": "def inc(x):\n    \"\"\"x + 1\"\"\"\n",
            "entry_point": "inc", "test": "def check(c):\n    assert c(1) == 2\n",
            "canonical_solution": "    return x + 1\n"}
    bad = dict(good, task_id="t/1", entry_point="not a name")
    path = tmp_path / "he.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    from ssb.errors import DataError

    with pytest.raises(DataError) as err:
        load_humaneval(str(path), "all")
    assert f"{path}:2" in str(err.value) and "entry_point" in str(err.value)
    result = load_humaneval(str(path), "all", skip_bad=True)
    assert [p.id for p in result.problems] == ["t/0"] and result.skipped[0].line == 2
    p = result.problems[0]
    program = p.metadata["prompt"] + p.metadata["canonical_solution"]
    assert CodeVerifier().verify(f"```python\n{program}```", p.gold, timeout=5).correct


MBPP_FULL = {"task_id": 2, "text": "Write a function to find the shared elements of two lists.",
             "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
             "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
                           "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))",
                           "assert set(similar_elements((11, 12, 14, 13), (17, 15, 14, 13))) == set((13, 14))"],
             "test_setup_code": "", "challenge_test_list": []}
MBPP_SANITIZED = {"source_file": "x.py", "task_id": 11,
                  "prompt": "Write a python function to remove first and last occurrence of a "
                            "given character from the string.",
                  "code": "def remove_Occ(s, ch):\n    i = s.find(ch)\n    s = s[:i] + s[i + 1:]\n"
                          "    j = s.rfind(ch)\n    return s[:j] + s[j + 1:]",
                  "test_imports": ["import math"],
                  "test_list": ['assert remove_Occ("hello","l") == "heo"',
                                'assert remove_Occ("abcda","a") == "bcd"',
                                'assert math.isfinite(1) and remove_Occ("PHP","P") == "H"']}


@pytest.mark.parametrize("name,row", [("mbpp", MBPP_FULL), ("mbpp-sanitized", MBPP_SANITIZED)])
def test_mbpp_rows_normalize_and_reference_code_passes(tmp_path, name, row):
    """The hub loader's normalization, on a local file with the hub's fields (no hub here)."""
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(row) + "\n")
    problems = mbpp_loader(name, "full").__call__(str(tmp_path), "test").problems
    assert len(problems) == 1
    p = problems[0]
    assert p.id == f"{name}/{row['task_id']}" and p.dataset == name
    assert row["test_list"][0] in p.question and row["test_list"][1] not in p.question
    assert all(t in p.gold for t in row["test_list"])
    verifier = CodeVerifier()
    assert verifier.verify(f"```python\n{row['code']}\n```", p.gold, timeout=5).correct
    wrong = verifier.verify("```python\ndef similar_elements(a, b):\n    return ()\n"
                            "def remove_Occ(s, ch):\n    return s\n```", p.gold, timeout=5)
    assert not wrong.correct and wrong.detail.startswith("failed: AssertionError")


def test_mbpp_bad_row_names_line_and_field(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(MBPP_FULL) + "\n" + json.dumps(dict(MBPP_FULL, test_list=[])) + "\n")
    from ssb.errors import DataError

    with pytest.raises(DataError) as err:
        mbpp_loader("mbpp", "full")(str(path), "test")
    assert f"{path}:2" in str(err.value) and "test_list" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Template, registry, CLI


def test_teacher_template_shows_the_failing_attempts_error():
    messages = TEMPLATE.teacher_messages(
        "Write f.", "```python\ndef f(): return 1\n```", "```python\ndef f(): return 2\n```",
        wrong_detail="failed: AssertionError | tests line 3: assert f() == 1 (got: 2)")
    user = messages[-1]["content"]
    assert "assert f() == 1 (got: 2)" in user and "def f(): return 2" in user
    assert "```python" in messages[0]["content"]  # the system prompt asks for one python block


def test_registry_lists_the_domain(ssb_cli):
    code, out, _ = ssb_cli("plugins", "--json")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert plugins["code"]["distribution"] == "softboot-code"
    assert set(plugins["code"]["registers"]["datasets"]) == {"humaneval", "mbpp", "mbpp-sanitized"}
    from ssb.plugins import get_registry

    reg = get_registry()
    assert reg.template("code").id == "code-tutor@1"
    assert reg.dataset("humaneval").domain == "code"


def test_cli_problems_offline(ssb_cli):
    code, out, _ = ssb_cli("problems", "--dataset", "humaneval", "--json")
    assert code == 0 and len(out.splitlines()) == 164
    code, out, _ = ssb_cli("problems", "--dataset", "humaneval", "--split", "test", "--json")
    assert code == 0 and len(out.splitlines()) == 82
    code, _, err = ssb_cli("problems", "--dataset", "humaneval", "--split", "validation")
    assert code == 2 and "all, train, test" in err


def test_cli_verify_single_and_batch(ssb_cli, tmp_path):
    gold = "def check(c):\n    assert c(2) == 4\n\ncheck(sq)\n"
    good = "```python\ndef sq(x):\n    return x * x\n```"
    code, out, _ = ssb_cli("verify", "--domain", "code", "--gold", gold, "--response", good)
    row = json.loads(out)
    assert code == 0 and row["correct"] is True and row["detail"] == "passed"
    code, out, _ = ssb_cli("verify", "--domain", "code", "--gold", gold, "--response",
                           good.replace("x * x", "x + x + 1"))
    row = json.loads(out)
    assert code == 1 and row["correct"] is False
    assert row["detail"].startswith("failed: AssertionError | tests line 2: assert c(2) == 4")
    path = tmp_path / "in.jsonl"
    rows = [{"response": good, "gold": gold}, {"response": "no code", "gold": gold},
            {"response": "```python\ndef sq(x):\n    while True: pass\n```", "gold": gold}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = ssb_cli("verify", "--domain", "code", "--input", str(path), "--timeout", "2")
    results = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["correct"] for r in results] == [True, False, False]
    assert results[2].get("error") == "timeout"
