"""benchmarks/gpu_kd_step.py: the GPU KD-step benchmark runs scaled down on CPU and prints its
table and JSON; its FLOP count and its pass/fail verdicts are checked by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_kd_step.py"
LABELS = ["sft (hf labels)", "sft (ssb ce)", "teacher fwd", "online KD (ssb)",
          "offline KD (ssb)", "dense KD (reference)"]


def _module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_kd_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runs_scaled_down_on_cpu_and_prints_the_table(tmp_path):
    out = tmp_path / "kd.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--steps", "1",
         "--warmup", "1", "--teacher-prompt-len", "40", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("variant"))
    for col in ("step ms", "tokens/s", "peak GiB", "TFLOP/step", "MFU", "time target",
                "mem target", "MFU>=40%"):
        assert col in lines[header]
    body = lines[header + 2:header + 2 + len(LABELS)]
    assert [row[:len(label)] for row, label in zip(body, LABELS)] == LABELS

    result = json.loads(out.read_text())
    assert result["machine"]["device"] == "cpu" and result["peak_flops"] > 0
    assert result["config"]["dtype"] == "fp32" and result["config"]["teacher_prompt_len"] == 40
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"sft_hf", "sft", "teacher_fwd", "online", "offline", "dense_ref"}
    for r in rows.values():
        assert "error" not in r, r
        assert r["step_s"] > 0 and r["tokens_per_s"] == pytest.approx(r["tokens"] / r["step_s"])
        assert r["mfu"] == pytest.approx(r["model_flops"] / r["step_s"] / result["peak_flops"])
        assert r["peak_bytes"] is None  # no allocator statistics on CPU
    assert rows["teacher_fwd"]["tokens"] == 2 * (40 + 24)  # the teacher view
    assert rows["online"]["tokens"] == 2 * (24 + 24)
    verdicts = result["targets"]["rows"]
    assert verdicts["online"]["time"] in (True, False)
    assert verdicts["offline"]["time"] in (True, False)
    assert verdicts["online"]["memory"] is None  # not measured on CPU


def test_model_flops_by_hand():
    """Tiny shape: hidden 64, 2 layers, 4 heads (dim 16), 2 KV heads, intermediate 128,
    vocab 2048, LoRA r=4, batch 2 x (24 + 24), teacher prompt 24."""
    m = _module()
    args = m.parse_args(["--tiny"])
    flops = m.model_flops(args)
    linear = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128  # q, k+v, o, gate+up+down
    lora = 4 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 3 * (64 + 128))
    tokens, attention = 2 * 48, 2 * 4 * 16 * 48 * 48  # per layer, both sequences
    fwd = 2 * (tokens * 2 * (linear + lora) + 2 * attention)
    bwd = 2 * (tokens * 2 * (linear + 2 * lora) + 2 * 2 * attention)
    head = 2 * (2 * 24) * 64 * 2048
    assert flops["sft"] == flops["offline"] == fwd + bwd + 2 * head
    teacher = 2 * (tokens * 2 * linear + 2 * attention) + head
    assert flops["teacher_fwd"] == teacher
    assert flops["online"] == flops["dense_ref"] == fwd + bwd + 2 * head + teacher


def _row(variant, step_s, peak_gb, mfu=0.5):
    return {"variant": variant, "step_s": step_s, "peak_bytes": peak_gb * 1e9, "mfu": mfu}


def test_targets_pass_and_fail():
    m = _module()
    rows = [_row("sft_hf", 1.2, 30), _row("sft", 1.0, 20), _row("teacher_fwd", 0.3, 18),
            _row("online", 1.43, 21.9), _row("offline", 1.11, 22.5, mfu=0.39)]
    t = m.judge(rows)
    assert t["sft_step_s"] == 1.0 and t["sft_peak_bytes"] == 20e9  # the better SFT row
    assert t["rows"]["online"]["time_limit_s"] == pytest.approx(1.1 * 1.3)
    assert t["rows"]["online"]["time"] is True and t["rows"]["online"]["memory"] is True
    assert t["rows"]["offline"]["time"] is False  # 1.11 > 1.1
    assert t["rows"]["offline"]["memory"] is False  # 22.5 GB > 20 + 2
    assert t["rows"]["offline"]["mfu"] is False and t["rows"]["sft"]["mfu"] is True
    assert t["rows"]["teacher_fwd"]["mfu"] is None  # no target for the teacher alone
    assert "dense_ref" not in t["rows"]
    # A missing teacher row: the online time target cannot be judged.
    assert m.judge([_row("sft", 1.0, 20), _row("online", 1.2, 20)])["rows"]["online"]["time"] \
        is None


def test_reference_and_ssb_compute_the_same_objectives():
    """The baselines are faithful: on one batch, the dense reference's KD loss equals ssb's
    online KD loss, and plain HF SFT's loss equals ssb's ce step (fp32, CPU)."""
    import torch

    m = _module()
    args = m.parse_args(["--tiny", "--device", "cpu", "--lora-dropout", "0",
                         "--teacher-prompt-len", "40"])
    device, dtype = torch.device("cpu"), torch.float32
    model, _ = m.build_model(args, device, dtype)
    for p in model.parameters():  # a non-zero adapter: student and teacher differ
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    exs = m.examples(args)
    values = {}
    for variant in ("online", "dense_ref", "sft", "sft_hf"):
        teacher = "online" if variant in ("online", "dense_ref") else "none"
        batch = m.collate(args, exs, teacher)
        with torch.no_grad():
            values[variant] = float(m.make_loss(variant, args, model, device, dtype)(batch))
    assert values["online"] > 1e-3
    assert values["dense_ref"] == pytest.approx(values["online"], rel=1e-4)
    assert values["sft_hf"] == pytest.approx(values["sft"], rel=1e-5)
