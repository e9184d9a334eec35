"""Kill-and-resume: SIGKILL ``ssb curate`` (a real subprocess) at many moments, rerun it, and
compare with an uninterrupted run.  The engine is the ``replay`` backend (recorded real model
outputs, slowed down per call) so the run is long enough to be killed mid-way yet fast."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
RECORDING = DATA / "recorded_rollouts_gsm8k.jsonl"
PROBLEMS = 8


def _command(shared_data: Path, out: Path, delay: float = 0.2) -> list[str]:
    return [sys.executable, "-m", "ssb", "curate", "--domain", "gsm8k", "--backend", "replay",
            "--model", str(RECORDING), "--source", str(shared_data / "gsm8k" / "train.jsonl"),
            "--limit", str(PROBLEMS), "--seed", "0", "--batch-size", "1", "-B", f"delay={delay}",
            "--template", "gsm8k-tutor@1",  # the template the recording was captured with
            "--no-progress", "--out", str(out)]


def _env(replay_plugin: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(replay_plugin), env.get("PYTHONPATH", "")])
    return env


def _journal_lines(out: Path) -> int:
    try:
        return (out / "journal.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _records(out: Path) -> list[str]:
    return (out / "curated.jsonl").read_text(encoding="utf-8").splitlines()


def _kill_when(proc: subprocess.Popen, out: Path, lines: int, extra_delay: float,
               timeout: float = 120.0) -> bool:
    """SIGKILL ``proc`` ``extra_delay`` s after its journal reaches ``lines`` lines.

    Returns False when the process finished first (nothing left to interrupt)."""
    deadline = time.monotonic() + timeout
    while _journal_lines(out) < lines:
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("curate made no progress")
        time.sleep(0.01)
    time.sleep(extra_delay)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_sigkill_at_many_moments_then_resume_equals_uninterrupted_run(replay_plugin, shared_data,
                                                                      tmp_path):
    env = _env(replay_plugin)
    reference = tmp_path / "reference"
    done = subprocess.run(_command(shared_data, reference), env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = _records(reference)
    assert expected, "the recording must yield kept records for this test to mean anything"

    out = tmp_path / "interrupted"
    rng = random.Random(1234)
    kills = 0
    # (journal lines reached, then a random extra delay): before any problem is finished (during
    # start-up, loading, the first backend call), between and inside later problems.
    for lines in (0, 1, 2, 4, 5, 7):
        proc = subprocess.Popen(_command(shared_data, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        delay = rng.uniform(0.0, 0.45) if lines else rng.uniform(0.3, 2.5)
        killed = _kill_when(proc, out, lines, delay)
        kills += killed
        if not killed:
            assert proc.wait() == 0, proc.stderr.read().decode()
        proc.stderr.close()
        # After every kill the output is consistent: curated.jsonl never holds a record the
        # journal lacks, and never a duplicate.
        if (out / "curated.jsonl").exists():
            got = _records(out)
            assert len(got) == len(set(got))
            assert set(got) <= set(expected)
    assert kills >= 4, "the run finished before it could be interrupted enough times"

    final = subprocess.run(_command(shared_data, out), env=env, capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr

    got = _records(out)
    assert sorted(got) == sorted(expected), "records differ from the uninterrupted run"
    assert len(got) == len(set(got))
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    ids = [e["id"] for e in journal]
    assert len(ids) == len(set(ids)) == PROBLEMS, "a problem was processed twice or lost"
    ref_journal = [json.loads(line) for line in (reference / "journal.jsonl").read_text()
                   .splitlines()]
    assert {e["id"]: e for e in journal} == {e["id"]: e for e in ref_journal}
    stats = json.loads((out / "stats.json").read_text())
    ref_stats = json.loads((reference / "stats.json").read_text())
    for key in ("problems_seen", "kept", "skipped", "rollouts", "rollouts_correct"):
        assert stats[key] == ref_stats[key], key
    assert stats["complete"] is True
    assert stats["wall_seconds_total"] >= stats["this_run"]["wall_seconds"]


def test_a_second_writer_is_refused(replay_plugin, shared_data, tmp_path):
    """Two processes on one output directory would interleave journals: the second one exits."""
    env = _env(replay_plugin)
    out = tmp_path / "run"
    # The first run is slow enough to be still running; the lock is checked before the config.
    first = subprocess.Popen(_command(shared_data, out, delay=3.0), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _journal_lines(out) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        second = subprocess.run(_command(shared_data, out), env=env, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2
        assert "another `ssb curate` is writing" in second.stderr
    finally:
        first.kill()
        first.wait()
        first.stderr.close()
