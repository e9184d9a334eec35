"""`ssb run` end to end on the tiny model: two rounds, the output tree, the report, and resume
after a SIGKILL during distill (nothing complete is redone)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest


def write_config(path: Path, model: Path, rounds: int, epochs: int = 2) -> Path:
    path.write_text(f"""
domain = "coinflip"
backend = "transformers"
model = "{model}"
rounds = {rounds}
seed = 0
eval = ["coinflip"]
eval-limit = 8
eval-max-tokens = 12

[curate]
rollouts = 4
max-tokens = 12
batch-size = 4

[curate.filters]
n = 64  # 12 kept 0 in round 2 on CI's CPU (teacher right ~14%); with 64, P(empty) ~ 0.1%

[distill]
epochs = {epochs}
batch-size = 2
lora-r = 4
lora-alpha = 8
max-length = 256
save-steps = 1
logging-steps = 1
""")
    return path


def ssb_run(args: list[str], plugin_path: Path, **kwargs) -> subprocess.Popen:
    from conftest import ssb_subprocess

    return ssb_subprocess("run", args, plugin_path, **kwargs)


@pytest.mark.slow
def test_run_two_rounds_tree_and_report(tmp_path, tiny_model_dir, coinflip_path):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "pipeline.toml", tiny_model_dir, rounds=2)
    proc = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-4000:]
    for r in (1, 2):
        rd = out / f"round{r}"
        assert (rd / "curate" / "curated.jsonl").stat().st_size > 0
        assert (rd / "curate" / "stats.json").exists()
        assert (rd / "distill" / "adapter" / "adapter_config.json").exists()
        assert (rd / "distill" / "metrics.jsonl").exists()
        assert (rd / "eval" / "coinflip" / "student" / "summary.json").exists()
    assert (out / "round1" / "merged" / "config.json").exists()  # round 2's model
    round2 = json.loads((out / "round2" / "curate" / "manifest.json").read_text())
    assert round2["config"]["model"] == str(out / "round1" / "merged")
    assert (out / "eval" / "coinflip" / "base" / "summary.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "run" and manifest["finished"]
    assert manifest["config"]["rounds"] == 2 and manifest["plugins"]["ssb-coinflip"] == "1.2.3"
    report = (out / "report.md").read_text()
    assert "## Curation" in report and "## Base vs student" in report
    assert "student (round 1)" in report and "student (round 2)" in report
    assert "McNemar" in report and (out / "plots" / "accuracy-per-round.png").exists()
    assert (out / "plots" / "training-round1.png").exists()
    assert "# SSB run report" in stdout  # the report is printed
    data = json.loads((out / "report.json").read_text())["datasets"]["coinflip"]
    assert [r["label"] for r in data["runs"]][0] == "base"
    assert len(data["comparisons"]) == 2
    # Rerunning the finished pipeline redoes nothing.
    again = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr2 = again.communicate(timeout=300)
    assert again.returncode == 0
    assert "[run]" not in stderr2 and stderr2.count("[skip]") == 2 * 3 + 1


@pytest.mark.slow
def test_a_round_that_curates_nothing_ends_the_rounds(tmp_path, tiny_model_dir, coinflip_path,
                                                       monkeypatch):
    """Round 2 finds every rollout right (the test domain's marker appears with round 1's merged
    model), keeps nothing: the run ends after round 1, exit 0, and the report says why."""
    out = tmp_path / "run"
    monkeypatch.setenv("COINFLIP_ALL_RIGHT_AFTER", str(out / "round1" / "merged" / "config.json"))
    cfg = write_config(tmp_path / "pipeline.toml", tiny_model_dir, rounds=3, epochs=1)
    proc = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-4000:]
    assert "round 2 curated no problems; the round-1 student is final" in stderr
    stats = json.loads((out / "round2" / "curate" / "stats.json").read_text())
    assert stats["kept"] == 0 and stats["skipped"]["all_correct"] == stats["problems_seen"] > 0
    assert not (out / "round2" / "distill").exists() and not (out / "round3").exists()
    report = (out / "report.md").read_text()
    assert "Round 2 curated no problems" in report
    assert "student (round 1)" in report and "student (round 2)" not in report
    assert json.loads((out / "manifest.json").read_text())["finished"]


@pytest.mark.slow
def test_run_resumes_after_sigkill_during_distill(tmp_path, tiny_model_dir, coinflip_path):
    out = tmp_path / "run"
    # Enough epochs that distill is still running when its first checkpoint appears (the tiny
    # model trains a step in well under a second on an idle machine).
    cfg = write_config(tmp_path / "pipeline.toml", tiny_model_dir, rounds=1, epochs=60)
    proc = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    deadline = time.time() + 600
    # Kill the whole process group once distill has written a checkpoint.
    while time.time() < deadline and proc.poll() is None:
        if list((out / "distill").glob("**/checkpoint-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    curated = out / "curate" / "curated.jsonl"
    curated_mtime = curated.stat().st_mtime_ns
    assert not (out / "distill" / "adapter" / "adapter_config.json").exists()

    again = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr[-4000:]
    assert "[skip] curate" in stderr and "[run] distill" in stderr
    assert curated.stat().st_mtime_ns == curated_mtime  # curate was not redone
    assert (out / "distill" / "adapter" / "adapter_config.json").exists()
    assert (out / "report.md").exists()


def test_run_rejects_a_bad_stage_setting_before_any_stage(tmp_path, tiny_model_dir, coinflip_path):
    """A bad [distill] value fails at once: no stage ran, nothing was written."""
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "pipeline.toml", tiny_model_dir, rounds=1)
    cfg.write_text(cfg.read_text().replace("lora-r = 4", "lora-r = 0"))
    proc = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "[distill]" in stderr and "--lora-r must be >= 1" in stderr
    assert not (out / "curate").exists()
    cfg.write_text(cfg.read_text().replace("lora-r = 0", "lora-r = 4")
                   .replace("[curate]", "[curate]\nrolouts = 3"))
    proc = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "unknown key 'rolouts'" in stderr
    assert not (out / "curate").exists()


def write_llama_config(path: Path, gguf: Path, hf_model: Path, rounds: int, epochs: int) -> Path:
    """`ssb run` on llama.cpp: the tiny model as a GGUF for curate and eval, its HF directory
    (the same weights) for distill, as `--model default` pairs the Q4_K_M file with its fp32
    conversion."""
    text = write_config(path, gguf, rounds, epochs).read_text()
    text = text.replace('backend = "transformers"',
                        'backend = "llama.cpp"\n'
                        f'distill-model = "{hf_model}"\n'
                        'backend-options = {n_threads = 1, n_ctx = 512, n_parallel = 4}')
    text = text.replace("[curate]\n", "[curate]\nteacher-max-tokens = 64\n")
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def stopping_model(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model made to end its answers (tests/tiny_gguf.py), as an HF directory and as an
    F32 GGUF of the same weights."""
    pytest.importorskip("llama_cpp")
    from tiny_gguf import build_tiny_gguf, make_it_stop

    from ssb.testing import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-stopping")
    hf = make_it_stop(build_tiny_model(root / "hf"))
    return hf, build_tiny_gguf(hf, root / "tiny.gguf")


@pytest.mark.slow
def test_two_rounds_on_llama_cpp_resume_after_sigkill_in_round_2(tmp_path, stopping_model,
                                                                  coinflip_path):
    """`ssb run --rounds 2 --backend llama.cpp`: round 2 curates with the base GGUF + round 1's
    adapter, distills on round 1 merged into the fp32 weights, and is evaluated as the base + both
    rounds folded into one GGUF LoRA.  A SIGKILL during round 2's distill loses and repeats
    nothing; the report says who curated each round; `ssb eval --adapter RUN/round2` (and the
    adapters as a repeated flag) is the same student."""
    out = tmp_path / "run"
    hf_model, tiny_gguf = stopping_model
    cfg = write_llama_config(tmp_path / "pipeline.toml", tiny_gguf, hf_model, rounds=2,
                             epochs=4)
    proc = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if list((out / "round2" / "distill").glob("**/checkpoint-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished (or failed) before round 2's distill: " + \
        proc.communicate()[1][-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r1, r2 = out / "round1", out / "round2"
    assert not (r2 / "distill" / "adapter" / "adapter_config.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in (
        r1 / "curate" / "curated.jsonl", r1 / "distill" / "adapter" / "adapter_model.safetensors",
        r1 / "merged" / "config.json", r1 / "student" / "adapter_model.safetensors",
        r1 / "student" / "adapter.gguf", r2 / "curate" / "curated.jsonl",
        out / "eval" / "coinflip" / "base" / "results.jsonl",
        r1 / "eval" / "coinflip" / "student" / "results.jsonl")}
    curate2 = json.loads((r2 / "curate" / "manifest.json").read_text())["config"]
    assert curate2["model"] == str(tiny_gguf)  # the base GGUF, not re-quantized...
    assert curate2["adapter"] == str(r1 / "student" / "adapter.gguf")  # ...+ round 1's LoRA

    again = ssb_run(["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr[-4000:]
    assert stderr.count("[skip]") == 5 and stderr.count("[run]") == 2, stderr[-3000:]
    assert f"[run] distill -> {r2 / 'distill'}" in stderr
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing redone
    distill2 = json.loads((r2 / "distill" / "manifest.json").read_text())["config"]
    assert distill2["model"] == str(r1 / "merged")  # trained on round 1 merged (fp32)
    folded = json.loads((r2 / "student" / "adapter_config.json").read_text())
    assert folded["r"] == 8  # rank 4 + 4: both rounds in one LoRA
    summary = json.loads((r2 / "eval" / "coinflip" / "student" / "summary.json").read_text())
    assert summary["model"] == str(tiny_gguf) and summary["adapter"] == str(r2 / "student")

    report = (out / "report.md").read_text()
    assert "| curated by |" in report
    assert f"| 1 | base ({tiny_gguf}) |" in report
    assert f"| 2 | round-1 student ({tiny_gguf} + round 1's LoRA) |" in report
    assert "student (round 2)" in report

    # The user names the round-2 student as its run directory, or its adapters in order.
    args = ["eval", "-d", "coinflip", "-b", "llama.cpp", "-m", str(tiny_gguf), "--limit", "8",
            "--max-tokens", "12", "-B", "n_threads=1", "-B", "n_ctx=512", "-B", "n_parallel=4"]
    want = [row["samples"] for row in map(json.loads, (
        r2 / "eval" / "coinflip" / "student" / "results.jsonl").read_text().splitlines())]
    for i, adapter in enumerate([["--adapter", str(r2)],
                                 ["--adapter", str(r1 / "distill" / "adapter"),
                                  "--adapter", str(r2 / "distill" / "adapter")]]):
        from conftest import ssb_subprocess

        ev = ssb_subprocess(args[0], [*args[1:], *adapter, "--out", str(tmp_path / f"e{i}")],
                            coinflip_path)
        _, err = ev.communicate(timeout=300)
        assert ev.returncode == 0, err[-3000:]
        got = [row["samples"] for row in map(json.loads, (
            tmp_path / f"e{i}" / "results.jsonl").read_text().splitlines())]
        assert [[s["text"] for s in g] for g in got] == [[s["text"] for s in w] for w in want]
        summary = json.loads((tmp_path / f"e{i}" / "summary.json").read_text())
        assert summary["adapters"] == [str(r1 / "distill" / "adapter"),
                                       str(r2 / "distill" / "adapter")]
