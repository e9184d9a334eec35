"""``ssb eval compare`` pairs problems on id *and* content (issue 13).

Before, it paired on id alone: two runs over different source files whose rows happen to share
ids (``gsm8k/test/0`` is just "row 0") were compared silently, a paired test over unrelated
problems.  Three real evals on the tiny model: two over the same questions (comparable), one
over other questions under the same ids (refused in one line, exit 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

QUESTIONS = ["What is 2 + 3?", "What is 4 * 5?", "What is 9 - 7?", "What is 8 / 2?"]


def _source(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": f"Work.\n#### {n}"}) + "\n"
                            for n, q in enumerate(questions)))
    return path


def _ssb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssb", *args], capture_output=True, text=True,
                          timeout=600)


def _eval(model: Path, source: Path, out: Path, max_tokens: int) -> Path:
    proc = _ssb("eval", "--dataset", "gsm8k", "--source", str(source), "--split", "test",
                "--backend", "transformers", "--model", str(model), "--max-tokens",
                str(max_tokens), "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_compare_refuses_runs_with_the_same_ids_over_other_questions(tiny_model_dir, tmp_path):
    same = _source(tmp_path / "a.jsonl", QUESTIONS)
    other = _source(tmp_path / "b.jsonl", [q.replace("What is", "Compute") for q in QUESTIONS])
    a = _eval(tiny_model_dir, same, tmp_path / "a", 4)
    a2 = _eval(tiny_model_dir, same, tmp_path / "a2", 6)
    b = _eval(tiny_model_dir, other, tmp_path / "b", 4)
    ids = [json.loads(line)["id"] for line in (a / "results.jsonl").read_text().splitlines()]
    assert ids == [json.loads(line)["id"]
                   for line in (b / "results.jsonl").read_text().splitlines()]  # same ids

    ok = _ssb("eval", "compare", str(a), str(a2), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["shared_problems"] == len(QUESTIONS)

    refused = _ssb("eval", "compare", str(a), str(b))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "different problems under the same id" in lines[0] and str(b) in lines[0]
    assert refused.stdout == ""
