"""Two processes never write one output directory (issue 13).

Before, distill and teacher-logits took no lock: two ``ssb distill`` on one ``--out`` both
"succeeded" with interleaved metrics and racing checkpoints.  Now every stage holds the output
lock of ``ssb.stage.StageOutput`` for as long as it runs.

The test is two real processes: the first is frozen (SIGSTOP) as soon as it has taken the lock
and written its manifest, so the second always meets a held lock, however fast or slow the
machine; the second must be refused in one line without touching the directory, and the first,
resumed, must finish normally.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_alignment import make_record, write_curated


def _stage_argv(stage: str, curated: Path, model: Path, out: Path) -> list[str]:
    if stage == "distill":
        return ["distill", "--curated", str(curated), "--model", str(model), "--out", str(out),
                "--lora-r", "4", "--lora-alpha", "8", "--max-length", "256", "--max-steps", "2",
                "--batch-size", "2", "--no-progress"]
    return ["teacher-logits", "--curated", str(curated), "--model", str(model), "--out",
            str(out), "--top-k", "8", "--max-length", "256", "--no-progress"]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.parametrize("stage", ["distill", "teacher-logits"])
def test_a_second_process_on_the_same_out_is_refused(stage, tiny_model_dir, tmp_path):
    curated = write_curated(tmp_path / "curated", [make_record(i) for i in range(4)])
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "ssb", *_stage_argv(stage, curated, tiny_model_dir, out)]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        # The manifest is written under the lock: once it exists, the lock is held.
        while not (out / "manifest.json").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first process never took the lock"
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGSTOP)  # holds the lock while frozen
        if first.poll() is not None:
            pytest.fail(f"the first {stage} finished before it could be frozen")
        before = _snapshot(out)

        second = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert lines[0] == f"error: another `ssb {stage}` is writing to {out}", lines
        assert _snapshot(out) == before  # the refused process wrote nothing

        os.killpg(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=600)
        assert first.returncode == 0, stderr
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGCONT)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == stage and manifest["finished"]
    if stage == "distill":
        steps = [json.loads(line)["step"] for line in
                 (out / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2]  # one writer: no interleaved or duplicated steps
        assert (out / "adapter" / "adapter_model.safetensors").exists()
    else:
        index = json.loads((out / "index.json").read_text())
        assert index["complete"] and len(index["examples"]) == 4
