"""The CUDA path, checked against the CPU: distillation in bf16 on the GPU trains like fp32 on the
CPU, the KD step's loss and gradients agree across devices, and generation runs on the GPU.

Skipped without a CUDA device (CI has none); run on a lent GPU with ``pytest -m gpu``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_alignment import make_record, write_curated
from test_distill_bf16 import (SOLUTIONS, assert_trains_like_fp32, distill_config,
                               training_outputs)

pytestmark = pytest.mark.gpu  # conftest skips these without a CUDA device

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def exact_fp32_matmuls():
    """TF32 off while the test runs (CUDA fp32 must match the CPU), as it was afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (getattr(matmul, "allow_tf32", False), cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    yield
    matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_bf16_distill_on_cuda_is_close_to_fp32_on_cpu(tiny_model_dir, tmp_path):
    """Same data, seed and 4 steps: ``dtype=auto`` on the GPU (bf16 weights, bf16 autocast, fp32
    LoRA weights and losses) against float32 on the CPU in a child process that sees no GPU.
    The tolerances of the CPU-only bf16 test (test_distill_bf16) hold across devices too."""
    from ssb.stages.distill.trainer import distill

    curated = write_curated(tmp_path / "curated",
                            [make_record(i, solution=s) for i, s in enumerate(SOLUTIONS)])
    gpu = distill(distill_config(curated, tiny_model_dir, tmp_path / "gpu-run", "auto"))
    assert gpu.summary["device"].startswith("cuda") and gpu.summary["dtype"] == "bfloat16"

    cpu_out = tmp_path / "cpu-run"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from test_distill_bf16 import distill_config; "
            "from ssb.stages.distill.trainer import distill; "
            "r = distill(distill_config(sys.argv[2], sys.argv[3], sys.argv[4], 'float32')); "
            "assert r.summary['device'] == 'cpu', r.summary['device']")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "tests"), str(curated),
                           str(tiny_model_dir), str(cpu_out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    assert_trains_like_fp32(*training_outputs(tmp_path / "gpu-run"), *training_outputs(cpu_out))


@pytest.mark.parametrize("teacher", ["online", "offline"])
def test_kd_step_loss_and_gradients_agree_across_devices(tiny_model_dir, tmp_path, teacher,
                                                         exact_fp32_matmuls):
    """One distill_step on the same LoRA model and batch: CUDA fp32 (TF32 off) equals the CPU
    to 1e-4; CUDA under bf16 autocast with bf16 weights is within 2% in loss and 0.98 in
    gradient cosine.  The offline teacher reads a real top-k store written on the GPU."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ssb.losses import forward_kl
    from ssb.models import load_tokenizer
    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.step import LossTerm, distill_step
    from ssb.stages.distill.teacher import TopKStore, build_store

    tok = load_tokenizer(str(tiny_model_dir))
    records = [make_record(i, solution=s) for i, s in enumerate(SOLUTIONS)]
    examples, _ = align_records(tok, records)
    store = None
    if teacher == "offline":
        curated = write_curated(tmp_path / "curated", records)
        build_store(curated, str(tiny_model_dir), tmp_path / "store", top_k=32,
                    temperature=2.0, device="cuda")
        store = TopKStore(tmp_path / "store")
    batch = DistillCollator(tok.pad_token_id, teacher=teacher, store=store)(examples)

    def step(device, dtype):
        torch.manual_seed(0)
        # Built on the CPU from one seed, then moved: the same weights on every device.
        base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=dtype)
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                init_lora_weights=False, task_type="CAUSAL_LM",
                                                target_modules=["q_proj", "v_proj", "down_proj"]))
        model.to(device)
        on = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
        with autocast:
            loss = distill_step(model, on, [LossTerm("kl", 1.0, forward_kl)], temperature=2.0,
                                teacher=teacher).loss
        loss.backward()
        grads = torch.cat([p.grad.float().flatten().cpu() for n, p in model.named_parameters()
                           if p.requires_grad])
        return float(loss.detach()), grads

    loss_cpu, g_cpu = step("cpu", torch.float32)
    loss_gpu, g_gpu = step("cuda", torch.float32)
    loss_bf16, g_bf16 = step("cuda", torch.bfloat16)
    assert loss_cpu > 0
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-4, abs=1e-6)
    assert float((g_gpu - g_cpu).norm() / g_cpu.norm()) < 1e-3
    assert loss_bf16 == pytest.approx(loss_cpu, rel=0.02)
    cosine = float(torch.nn.functional.cosine_similarity(g_bf16, g_cpu, dim=0))
    assert cosine > 0.98, cosine


def test_transformers_backend_greedy_on_cuda_matches_cpu(tiny_model_dir, exact_fp32_matmuls):
    """The transformers backend on the GPU in fp32 decodes what it decodes on the CPU (greedy,
    TF32 off); in bf16 it runs and returns the requested number of completions."""
    from ssb_backends.transformers import TransformersBackend

    from ssb.records import SamplingParams

    conversations = [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(4)]
    params = SamplingParams(temperature=0.0, max_new_tokens=16, n=1, seed=0)

    def texts(device, dtype):
        backend = TransformersBackend(str(tiny_model_dir), device=device, dtype=dtype,
                                      batch_size=4)
        assert str(backend.model.device).startswith(device)
        out = backend.generate(conversations, params)
        backend.close()
        return [[c.text for c in row] for row in out]

    cpu = texts("cpu", "float32")
    assert texts("cuda", "float32") == cpu
    bf16 = texts("cuda", "bfloat16")
    assert [len(row) for row in bf16] == [1] * 4 and all(row[0] for row in bf16)
