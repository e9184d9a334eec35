"""Distributed distillation for real: 2 CPU processes (gloo DDP) under ``accelerate launch``.

* 2 processes x batch 2 train what 1 process x batch 4 trains (same seed, same global batch,
  same data order): same logged losses, same adapter;
* one adapter, one metrics.jsonl (rank 0), checkpoints with both ranks' RNG states;
* a 2-process run SIGKILLed mid-training (the launcher's process group) leaves no worker behind,
  and rerunning the command resumes from its last checkpoint to the adapter of a run never
  killed.

Launcher note: ``accelerate launch --cpu --num_processes 2`` starts ONE process (accelerate's
multi-CPU launch needs mpirun); ``--multi_gpu --num_processes 2`` runs torchrun, and on a machine
without CUDA ssb trains those processes on CPU with gloo.  ``torchrun --nproc_per_node 2 -m ssb
distill ...`` does the same.
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
import torch
from conftest import free_port
from test_alignment import make_record, write_curated

pytestmark = pytest.mark.slow

# Solution lengths from ~10 to ~90 tokens: a wrong per-process weighting would show.
SOLUTIONS = [
    "The answer is \\boxed{5}.",
    "First 4 + 4 = 8. Then 8 + 1 = 9. The answer is \\boxed{9}.",
    " ".join(f"Step {k}: 12 + {k} = {12 + k}." for k in range(12)) + " The answer is \\boxed{23}.",
    "So 3 * 4 = 12 and 12 / 2 = 6. The answer is \\boxed{6}.",
]


def _distill_args(curated: Path, model: Path, out: Path, **flags) -> list[str]:
    args = {"curated": curated, "model": model, "out": out, "lora-r": 8, "lora-alpha": 16,
            "lora-dropout": 0.0, "max-length": 512, "lr": 1e-2, "dtype": "float32",
            "loss": "kl=1,ce=0.5", "seed": 5, "max-grad-norm": 1e9, **flags}
    return ["distill", *[x for k, v in args.items() for x in (f"--{k}", str(v))]]


def _env(tmp: Path) -> dict[str, str]:
    # A private HF_HOME: no accelerate config of this machine's user is picked up.
    return {**os.environ, "HF_HOME": str(tmp / "hf"), "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1"}


def _two_process_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(free_port()),
            "-m", "ssb", *args]


def _run(cmd: list[str], tmp: Path, log: str) -> None:
    with open(tmp / log, "w") as f:
        proc = subprocess.run(cmd, env=_env(tmp), stdout=f, stderr=subprocess.STDOUT,
                              timeout=900, check=False)
    assert proc.returncode == 0, (tmp / log).read_text()[-4000:]


def _metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def _assert_same_adapter(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


@pytest.fixture(scope="module")
def data(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp-data")
    records = [make_record(i, solution=SOLUTIONS[i % 4]) for i in range(8)]
    return write_curated(root / "curated", records), tiny_model_dir


def test_two_processes_match_one_process_with_twice_the_batch(data, tmp_path):
    """Tolerances: logged losses rel 1e-5; adapter 1e-5 absolute after 4 AdamW steps of lr 1e-2
    (observed ~6e-7: the gradient all-reduce sums in another order than one process does, and
    Adam magnifies that where a gradient is near its eps)."""
    curated, model = data
    flags = dict(epochs=2, **{"save-steps": 2})
    two, one = tmp_path / "two", tmp_path / "one"
    _run(_two_process_cmd(*_distill_args(curated, model, two, **{"batch-size": 2}, **flags)),
         tmp_path, "two.log")
    _run([sys.executable, "-m", "ssb",
          *_distill_args(curated, model, one, **{"batch-size": 4}, **flags)], tmp_path, "one.log")

    rows2, rows1 = _metrics(two), _metrics(one)
    assert [r["step"] for r in rows2] == [1, 2, 3, 4]  # one log, written once (rank 0 only)
    assert [r["step"] for r in rows1] == [1, 2, 3, 4]
    for r2, r1 in zip(rows2, rows1):
        assert r2["solution_tokens"] == r1["solution_tokens"]  # same examples in each step
        for key in ("loss", "loss_kl", "loss_ce"):
            assert r2[key] == pytest.approx(r1[key], rel=1e-5), (r2, r1)
    _assert_same_adapter(_adapter(two), _adapter(one), atol=1e-5)
    # Both ranks really trained: the checkpoint holds an RNG state per process.
    ckpt = two / "checkpoints" / "checkpoint-4"
    assert (ckpt / "rng_state_0.pth").exists() and (ckpt / "rng_state_1.pth").exists()
    assert not (one / "checkpoints" / "checkpoint-4" / "rng_state_1.pth").exists()
    assert json.loads((two / "manifest.json").read_text())["finished"]


def _pids_of_run(out: Path) -> list[int]:
    """Live processes whose command line names this run's OUT."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if str(out).encode() in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def test_two_process_run_killed_mid_training_resumes(data, tmp_path):
    """SIGKILL to the launcher's process group once checkpoint 2 of 16 is written; no worker
    may survive it (torchrun starts them in sessions of their own); the same command then
    resumes and ends with the adapter of an uninterrupted run (1e-5 absolute, as above)."""
    curated, model = data
    flags = {"batch-size": 2, "epochs": 8, "save-steps": 2}
    killed = tmp_path / "killed"
    cmd = _two_process_cmd(*_distill_args(curated, model, killed, **flags))
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            marker = killed / "checkpoints" / "checkpoint-2" / "trainer_state.json"
            deadline = time.monotonic() + 600
            while not marker.exists():
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
                assert time.monotonic() < deadline
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _pids_of_run(killed) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pids_of_run(killed), "a worker outlived its launcher"
    assert not (killed / "adapter").exists(), "the run finished before it was killed"
    done = [r["step"] for r in _metrics(killed)]
    assert done and max(done) < 16

    _run(_two_process_cmd(*_distill_args(curated, model, killed, **flags)), tmp_path,
         "resumed.log")
    summary = json.loads((killed / "manifest.json").read_text())["summary"]
    assert summary["resumed_from"] and summary["steps"] == 16
    assert [r["step"] for r in _metrics(killed)] == list(range(1, 17))

    straight = tmp_path / "straight"
    _run(_two_process_cmd(*_distill_args(curated, model, straight, **flags)), tmp_path,
         "straight.log")
    _assert_same_adapter(_adapter(killed), _adapter(straight), atol=1e-5)
