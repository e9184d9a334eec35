"""`ssb eval --backend vllm --adapter DIR` with a peft LoRA written by `ssb distill`: the adapter
changes the responses, and they are the transformers backend's with the same adapter, whether
vLLM's CPU build serves it merged into the base (the default on a CPU, Amendment 5 of
docs/study-gsm8k.md) or through its LoRA path (`-B cpu_adapter=lora`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vllm_helpers import SKIP_REASON, TINY_OPTS, run_ssb

pytest.importorskip("vllm", reason=SKIP_REASON)


def _texts(out: Path) -> list[str]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [r["samples"][0]["text"] for r in sorted(rows, key=lambda r: r["id"])]


def test_eval_with_a_distilled_adapter_matches_transformers(vllm_tiny, ssb_cli, tmp_path):
    from test_alignment import make_record, write_curated

    curated = write_curated(tmp_path / "curated", [make_record(i) for i in range(4)])
    adapter_run = tmp_path / "distill"
    code, _, err = ssb_cli("distill", "--curated", str(curated), "--model", str(vllm_tiny),
                           "--out", str(adapter_run), "--lora-r", "8", "--lora-alpha", "16",
                           "--lora-dropout", "0", "--max-steps", "6", "--batch-size", "2",
                           "--lr", "2e-2", "--max-length", "256", "--no-progress")
    assert code == 0, err
    adapter = adapter_run / "adapter"
    assert (adapter / "adapter_config.json").is_file()

    common = ["eval", "--dataset", "arithmetic", "--limit", "4", "--max-tokens", "16",
              "--no-progress", "--model", str(vllm_tiny)]
    done = run_ssb(*common, "--backend", "vllm", "--adapter", str(adapter), *TINY_OPTS,
                   "-B", "max_lora_rank=8", "-B", f"log_file={tmp_path / 'a.log'}",
                   "--out", str(tmp_path / "vllm-adapter"))
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_ssb(*common, "--backend", "vllm", *TINY_OPTS,
                   "-B", f"log_file={tmp_path / 'b.log'}", "--out", str(tmp_path / "vllm-base"))
    assert done.returncode == 0, done.stderr[-3000:]
    code, _, err = ssb_cli(*common, "--backend", "transformers", "--adapter", str(adapter),
                           "-B", "dtype=float32", "-B", "device=cpu",
                           "--out", str(tmp_path / "hf-adapter"))
    assert code == 0, err
    with_adapter = _texts(tmp_path / "vllm-adapter")
    assert len(with_adapter) == 4
    assert with_adapter != _texts(tmp_path / "vllm-base"), "the adapter changed nothing"
    assert with_adapter == _texts(tmp_path / "hf-adapter")

    # The default on a CPU served the merged model: a stamped directory made for this adapter.
    from ssb.models import MERGE_STAMP, cache_dir

    stamps = [json.loads(p.read_text()) for p in (cache_dir() / "merged").glob(f"*/{MERGE_STAMP}")]
    assert any(st["adapter"] == str(adapter) for st in stamps), stamps
    # vLLM's LoRA path, chosen explicitly, gives the same texts
    done = run_ssb(*common, "--backend", "vllm", "--adapter", str(adapter), *TINY_OPTS,
                   "-B", "max_lora_rank=8", "-B", "cpu_adapter=lora",
                   "-B", f"log_file={tmp_path / 'c.log'}", "--out", str(tmp_path / "vllm-lora"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert _texts(tmp_path / "vllm-lora") == with_adapter
