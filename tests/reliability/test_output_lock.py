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


def _snapshot(root: Path, locks: bool = False) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes; lock files only with ``locks`` (a refused
    command must not even create one)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and (locks or not p.name.endswith(".lock"))}


@pytest.mark.slow
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


# -- issue 21: one lock per directory, whatever the command -------------------------------------

def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, \
        proc.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.slow
def test_curate_and_eval_never_share_an_output_directory(tiny_model_dir, tmp_path):
    """Before, the locks were per command (``.curate.lock``, ``.eval.lock``): ``ssb curate``
    and ``ssb eval`` on one ``--out`` both ran and interleaved one journal.jsonl.

    A real ``ssb curate`` is frozen (SIGSTOP) holding its directory.  An ``ssb eval`` on the
    same ``--out`` is refused by the manifest's command; with the manifest moved away (the
    instant before a first run writes it) it is refused by the lock; either way in one line,
    writing nothing.  The curate, resumed, finishes alone.  Its finished directory is then
    refused by ``ssb eval`` before anything, not even a lock file, is written in it."""
    out = tmp_path / "shared"
    model = str(tiny_model_dir)
    curate = [sys.executable, "-m", "ssb", "curate", "--domain", "arithmetic", "--backend",
              "transformers", "--model", model, "--limit", "2", "--rollouts", "2",
              "--max-tokens", "8", "--out", str(out), "--no-progress"]
    evaluate = [sys.executable, "-m", "ssb", "eval", "--dataset", "arithmetic", "--backend",
                "transformers", "--model", model, "--limit", "2", "--max-tokens", "8",
                "--out", str(out), "--no-progress"]
    first = subprocess.Popen(curate, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "manifest.json").exists():  # written under the lock
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "curate never took the lock"
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGSTOP)
        before = _snapshot(out, locks=True)

        by_manifest = subprocess.run(evaluate, capture_output=True, text=True, timeout=300)
        assert _one_error_line(by_manifest) == (
            f"error: {out} holds a `curate` run, not `eval`; use another --out")
        assert _snapshot(out, locks=True) == before

        aside = tmp_path / "manifest.aside"
        os.replace(out / "manifest.json", aside)
        by_lock = subprocess.run(evaluate, capture_output=True, text=True, timeout=300)
        os.replace(aside, out / "manifest.json")
        assert _one_error_line(by_lock) == f"error: another `ssb curate` is writing to {out}"
        assert _snapshot(out, locks=True) == before

        os.killpg(first.pid, signal.SIGCONT)
        _, stderr = first.communicate(timeout=600)
        assert first.returncode == 0, stderr
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGCONT)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    rows = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("rollouts" in r or "status" in r for r in rows), rows

    done = _snapshot(out, locks=True)
    again = subprocess.run(evaluate, capture_output=True, text=True, timeout=300)
    assert _one_error_line(again).startswith(f"error: {out} holds a `curate` run")
    assert _snapshot(out, locks=True) == done  # checked before the lock file or anything else is written
