"""Lone surrogates are stored safely and read back exactly (issue 13).

A dataset row, a model response or ``verify --input`` text may hold a lone surrogate
(``"\\ud800"``, e.g. from a JSON escape), which UTF-8 cannot encode.  Before the fix the journal's
``write`` raised ``UnicodeEncodeError`` for such a record, on every rerun, so that run could never
finish.  Now journal lines and atomic writes store it as its JSON escape and go on.
"""

from __future__ import annotations

import json
import subprocess
import sys


from ssb.journal import Journal, atomic_write_json, atomic_write_text, json_line, read_jsonl

LONE = ["\ud800", "\udfff", "x\udc80y", "\\\ud800"]  # high, low, inside text, after a backslash
RECORDS = [
    {"id": "p/0", "response": f"bad {LONE[0]} \\boxed{{5}}", "gold": "5"},
    {"id": "p/1", "question": "caf\u00e9 \U0001F600", "response": LONE[2]},  # valid non-ASCII too
    {LONE[1]: "key", "nested": {"list": [LONE[3], 1, None]}},
]


def test_journal_writes_and_reads_back_lone_surrogates(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append(RECORDS[0])
    # a rerun reopens the journal (cutting a torn tail) and appends again
    with Journal(path) as journal:
        for record in RECORDS[1:]:
            journal.append(record)
    assert Journal(path).read() == RECORDS
    text = path.read_bytes().decode("utf-8")  # the file itself is valid UTF-8
    assert "caf\u00e9" in text and "\\ud800" in text  # readable non-ASCII; escaped surrogate
    assert len(text.splitlines()) == 3


def test_atomic_writes_store_lone_surrogates(tmp_path):
    atomic_write_json(tmp_path / "summary.json", {"records": RECORDS})
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")) == {
        "records": RECORDS}
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS)
    atomic_write_text(tmp_path / "results.jsonl", lines)
    assert list(read_jsonl(tmp_path / "results.jsonl")) == RECORDS
    assert [json.loads(json_line(r)) for r in RECORDS] == RECORDS


def test_verify_input_with_lone_surrogates(tmp_path):
    rows = [{"response": f"so {LONE[0]} it is \\boxed{{5}}", "gold": "5"},
            {"response": "\\boxed{6}", "gold": f"6{LONE[1]}"},
            {"response": LONE[2], "gold": "1"}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
    proc = subprocess.run([sys.executable, "-m", "ssb", "verify", "--domain", "math", "--input",
                           str(path)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    out = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert [(o["response"], o["gold"]) for o in out] == [(r["response"], r["gold"]) for r in rows]
    assert [o["correct"] for o in out] == [True, False, False]
