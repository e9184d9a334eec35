"""`ssb curate --domain arithmetic --backend vllm`: SIGKILLed mid-run (the whole process group,
vLLM's engine processes included), rerun, and compared with an uninterrupted run: nothing lost,
nothing duplicated, the same journal (vLLM's per-request seeds do not depend on which problems
share a batch, so the resumed part samples exactly what the uninterrupted run sampled)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vllm_helpers import SKIP_REASON, TINY_OPTS, run_ssb

pytest.importorskip("vllm", reason=SKIP_REASON)

PROBLEMS = 12


def _args(model: Path, out: Path) -> list[str]:
    return ["curate", "--domain", "arithmetic", "--backend", "vllm", "--model", str(model),
            "--limit", str(PROBLEMS), "--rollouts", "2", "--max-tokens", "24", "--seed", "0",
            "--batch-size", "1", "--no-progress", *TINY_OPTS,
            "-B", f"log_file={out.parent / (out.name + '.vllm.log')}", "--out", str(out)]


def _journal(out: Path) -> list[dict]:
    path = out / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_curate_resumes_after_sigkill_with_nothing_lost_or_duplicated(vllm_tiny, tmp_path):
    reference = tmp_path / "reference"
    done = run_ssb(*_args(vllm_tiny, reference))
    assert done.returncode == 0, done.stderr[-3000:]
    expected = {e["id"]: e for e in _journal(reference)}
    assert len(expected) == PROBLEMS

    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "ssb", *_args(vllm_tiny, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 900
    while len(_journal(out)) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "curate made no progress"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # ssb and vLLM's engine processes, at once
    proc.wait()
    proc.stderr.close()
    before = _journal(out)
    assert 2 <= len(before) < PROBLEMS, "the run finished before it could be interrupted"

    done = run_ssb(*_args(vllm_tiny, out))
    assert done.returncode == 0, done.stderr[-3000:]
    journal = _journal(out)
    ids = [e["id"] for e in journal]
    assert len(ids) == len(set(ids)) == PROBLEMS, "a problem was processed twice or lost"
    assert {e["id"]: e for e in journal} == expected
    assert journal[:len(before)] == before  # what was done before the kill was kept, not redone
    stats = json.loads((out / "stats.json").read_text())
    assert stats["complete"] is True and stats["problems_seen"] == PROBLEMS
    curated = (out / "curated.jsonl").read_text().splitlines()
    assert sorted(curated) == sorted((reference / "curated.jsonl").read_text().splitlines())
