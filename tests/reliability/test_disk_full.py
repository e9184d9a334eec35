"""A full disk is one line naming the path, and what is done is kept (issue 13).

Before, curate, eval and distill died with an ``OSError: [Errno 28]`` (or safetensors') traceback.
Now a stage reports ``error: no space left on device writing PATH; the work finished so far is
kept in OUT: free some space and rerun the same command to continue`` (exit 2), and the same
command, once there is room, continues from its journal or last complete checkpoint.

The disk is real: the output directory is a tmpfs of a few KiB in a private mount namespace
(``ssb.testing.run_on_small_disk``: root, an unprivileged user namespace or passwordless sudo),
so writes fail with the kernel's own ENOSPC; "freeing space" is growing the same tmpfs.  Where
the machine allows no mount namespace the test is skipped (and says why).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssb.testing import run_on_small_disk, small_disk_prefix
from test_alignment import make_record, write_curated

RECORDING = Path(__file__).resolve().parent.parent / "data" / "recorded_rollouts_arithmetic.jsonl"

pytestmark = pytest.mark.skipif(small_disk_prefix() is None,
                                reason="no private mount namespace here to mount a small tmpfs")


def _one_error_line(step: dict, out: Path) -> str:
    assert step["rc"] == 2, step["stderr"]
    assert "Traceback" not in step["stderr"], step["stderr"]
    lines = [ln for ln in step["stderr"].splitlines() if ln.strip() and not ln.startswith("[")]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"error: no space left on device writing {out}"), line
    assert f"the work finished so far is kept in {out}" in line, line
    return line


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    # a torn last line (the write that failed) is what the next run cuts off
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _curate_argv(out: Path) -> list[str]:
    return [sys.executable, "-m", "ssb", "curate", "--domain", "arithmetic", "--split", "train",
            "--backend", "replay", "--model", str(RECORDING), "--limit", "8", "--seed", "0",
            "--rollouts", "4", "--temperature", "0.8", "--top-k", "50", "--max-tokens", "400",
            "--batch-size", "2", "--no-progress", "--out", str(out),
            "--template", "arithmetic-tutor@1"]  # the template the recording was captured with


@pytest.mark.slow
def test_curate_on_a_full_disk(replay_plugin, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(replay_plugin), os.environ.get("PYTHONPATH")]))}
    disk = tmp_path / "disk"
    argv = _curate_argv(disk / "out")
    full, rerun = run_on_small_disk(disk, [(32, argv), (4096, argv)], side=tmp_path / "side",
                                    env=env)
    _one_error_line(full, disk / "out")
    kept = _jsonl(full["files"] / "out" / "journal.jsonl")
    assert 0 < len(kept) < 8  # stopped part-way, with finished problems journaled

    assert rerun["rc"] == 0, rerun["stderr"]
    journal = _jsonl(rerun["files"] / "out" / "journal.jsonl")
    assert journal[:len(kept)] == kept  # nothing finished was lost or redone
    assert sorted(e["id"] for e in journal) == sorted({e["id"] for e in journal})
    assert len(journal) == 8
    # The result is the one an uninterrupted run gives.
    clean = subprocess.run(_curate_argv(tmp_path / "clean"), env=env, capture_output=True,
                           text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr
    for name in ("curated.jsonl", "rejected.jsonl"):
        assert sorted((rerun["files"] / "out" / name).read_text().splitlines()) == \
            sorted((tmp_path / "clean" / name).read_text().splitlines()), name


@pytest.mark.slow
def test_eval_on_a_full_disk(tiny_model_dir, tmp_path):
    disk = tmp_path / "disk"
    argv = [sys.executable, "-m", "ssb", "eval", "--dataset", "arithmetic", "--backend",
            "transformers", "--model", str(tiny_model_dir), "--limit", "6", "--max-tokens",
            "64", "--batch-size", "1", "--no-progress", "--out", str(disk / "out")]
    # 12 KiB: the manifest, the lock (it names its holder) and a few journal lines fit.
    full, rerun = run_on_small_disk(disk, [(12, argv), (4096, argv)], side=tmp_path / "side")
    _one_error_line(full, disk / "out")
    kept = {e["id"]: e for e in _jsonl(full["files"] / "out" / "journal.jsonl")}
    assert kept  # finished problems are journaled

    assert rerun["rc"] == 0, rerun["stderr"]
    assert (rerun["files"] / "out" / "summary.json").exists()
    results = _jsonl(rerun["files"] / "out" / "results.jsonl")
    assert sorted(r["id"] for r in results) == sorted({r["id"] for r in results})
    assert len(results) == 6
    for r in results:  # what the full-disk run finished is reported as it was, not redone
        if r["id"] in kept:
            assert r["samples"] == kept[r["id"]]["samples"]


@pytest.mark.slow
def test_distill_on_a_full_disk(tiny_model_dir, tmp_path):
    curated = write_curated(tmp_path / "curated", [make_record(i) for i in range(4)])
    disk = tmp_path / "disk"
    argv = [sys.executable, "-m", "ssb", "distill", "--curated", str(curated), "--model",
            str(tiny_model_dir), "--out", str(disk / "out"), "--lora-r", "4", "--lora-alpha",
            "8", "--max-length", "256", "--batch-size", "2", "--max-steps", "4",
            "--save-steps", "1", "--no-progress"]
    # ~180 KiB per checkpoint of the tiny model: the second one does not fit in 200 KiB.
    full, rerun = run_on_small_disk(disk, [(200, argv), (8192, argv)], side=tmp_path / "side")
    _one_error_line(full, disk / "out")
    assert (full["files"] / "out" / "checkpoints" / "checkpoint-1" / "trainer_state.json").exists()

    assert rerun["rc"] == 0, rerun["stderr"]
    assert f"resuming from {disk / 'out' / 'checkpoints' / 'checkpoint-1'}" in rerun["stderr"]
    steps = [r["step"] for r in _jsonl(rerun["files"] / "out" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4]
    assert (rerun["files"] / "out" / "adapter" / "adapter_model.safetensors").exists()
