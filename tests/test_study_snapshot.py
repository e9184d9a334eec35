"""scripts/study_snapshot.py: the committed copy of a study run keeps each finished evaluation's
per-problem verdicts (reply texts left out), so a snapshot pairs with later runs problem by
problem through `ssb eval compare`; an evaluation still running is not copied."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "study_snapshot.py"


def test_snapshot_keeps_per_problem_verdicts_without_texts(tiny_model_dir, tmp_path, ssb_cli):
    run = tmp_path / "run"
    done = run / "eval" / "arithmetic" / "base"
    code, _, err = ssb_cli("eval", "--dataset", "arithmetic", "--split", "test", "--filter",
                           "n=6", "--backend", "transformers", "--model", str(tiny_model_dir),
                           "--max-tokens", "8", "--no-progress", "--out", str(done))
    assert code == 0, err
    running = run / "eval" / "arithmetic" / "ssb"  # results so far, no summary: not finished
    running.mkdir(parents=True)
    (running / "results.jsonl").write_text((done / "results.jsonl").read_text())
    beside = run / "repro" / "ssb"  # an evaluation run beside the study, finished
    shutil.copytree(done, beside)
    dest = tmp_path / "snapshot"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run), str(dest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

    original = [json.loads(x) for x in (done / "results.jsonl").read_text().splitlines()]
    copied = [json.loads(x) for x in
              (dest / "eval/arithmetic/base/results.jsonl").read_text().splitlines()]
    assert len(copied) == len(original) == 6
    assert all(s["text"] for row in original for s in row["samples"])
    for a, b in zip(original, copied):
        assert [{k: v for k, v in s.items() if k != "text"} for s in a["samples"]] == \
            b["samples"]
        assert {k: v for k, v in a.items() if k != "samples"} == \
            {k: v for k, v in b.items() if k != "samples"}
    assert (dest / "eval/arithmetic/base/summary.json").is_file()
    assert not (dest / "eval/arithmetic/ssb").exists()
    assert (dest / "repro/ssb/results.jsonl").read_text() == \
        (dest / "eval/arithmetic/base/results.jsonl").read_text()
    assert (dest / "repro/ssb/summary.json").is_file()

    code, stdout, err = ssb_cli("eval", "compare", str(done), str(dest / "eval/arithmetic/base"),
                                "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["shared_problems"] == 6
    (c,) = report["comparisons"]
    assert c["diff"] == 0 and (c["a_only"], c["b_only"]) == (0, 0)
