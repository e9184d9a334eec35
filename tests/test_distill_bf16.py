"""The bf16 path on CPU (correctness, not speed): losses in fp32 from bf16 logits, the adapter
saved in fp32, training close to fp32 training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_alignment import make_record, write_curated

SOLUTIONS = [
    "The answer is \\boxed{5}.",
    "First 4 + 4 = 8. Then 8 + 1 = 9. The answer is \\boxed{9}.",
    " ".join(f"Step {k}: 12 + {k} = {12 + k}." for k in range(6)) + " The answer is \\boxed{17}.",
    "So 3 * 4 = 12 and 12 / 2 = 6. The answer is \\boxed{6}.",
]


@pytest.mark.parametrize("name", ["kl", "rkl", "jsd", "ce"])
@pytest.mark.parametrize("teacher", ["dense", "topk"])
def test_losses_are_fp32_from_bf16_logits(name, teacher):
    """Every built-in loss upcasts bf16 logits before any softmax: its value is fp32 and equals
    the loss of the same (bf16-rounded) logits given in fp32, to fp32 rounding."""
    from ssb.losses import BUILTIN, LossInputs, TopKTeacher
    from ssb.stages.distill.teacher import topk_from_logits

    g = torch.Generator().manual_seed(0)
    student = (3 * torch.randn(12, 300, generator=g)).bfloat16().requires_grad_()
    teacher_logits = (3 * torch.randn(12, 300, generator=g)).bfloat16()
    targets = torch.randint(0, 300, (12,), generator=g)

    def inputs(s):
        if teacher == "dense":
            return LossInputs(s, targets, teacher_logits=teacher_logits.to(s.dtype),
                              temperature=2.0)
        top = topk_from_logits(teacher_logits.float(), 16, 2.0)
        return LossInputs(s, targets, teacher_topk=TopKTeacher(
            top.indices, top.log_probs, top.tail_log_mass, 2.0), temperature=2.0)

    value = BUILTIN[name](inputs(student))
    assert value.dtype == torch.float32
    reference = BUILTIN[name](inputs(student.detach().float()))
    torch.testing.assert_close(value.detach(), reference, rtol=1e-5, atol=1e-6)
    value.backward()
    assert student.grad is not None and student.grad.dtype == torch.bfloat16
    assert torch.isfinite(student.grad.float()).all()


def test_bf16_step_hands_bf16_logits_to_fp32_losses(tiny_model_dir):
    """distill_step on a bf16 model: the loss functions receive bf16 logits (the LM head runs in
    its weight dtype) and return fp32, including when the hidden states arrive in fp32 (as
    mixed precision's forward wrapper hands them back)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.step import LossTerm, distill_step
    from ssb.losses import forward_kl
    from ssb.models import load_tokenizer

    seen = []

    def recording_kl(inputs):
        seen.append((inputs.student_logits.dtype, inputs.teacher_logits.dtype))
        return forward_kl(inputs)

    tok = load_tokenizer(str(tiny_model_dir))
    examples, _ = align_records(tok, [make_record(i) for i in range(2)])
    batch = DistillCollator(tok.pad_token_id, teacher="online")(examples)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"],
                                            task_type="CAUSAL_LM"))
    result = distill_step(model, batch, [LossTerm("kl", 1.0, recording_kl)], temperature=2.0,
                          teacher="online")
    assert seen == [(torch.bfloat16, torch.bfloat16)]
    assert result.loss.dtype == torch.float32
    result.loss.backward()
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)  # peft keeps adapters in fp32


def distill_config(curated, model, out, dtype):
    """The small run both bf16-vs-fp32 comparisons train (here and in test_gpu): 4 steps."""
    from ssb.stages.distill.trainer import DistillConfig

    return DistillConfig(curated=str(curated), model=str(model), out=str(out), lora_r=8,
                         lora_alpha=16, lora_dropout=0.0, batch_size=2, epochs=2.0, lr=1e-2,
                         temperature=2.0, loss="kl=1,ce=0.5", save_steps=1000, max_length=512,
                         dtype=dtype, seed=1)


def training_outputs(out):
    """A finished run's logged metrics and its saved adapter tensors."""
    from safetensors.torch import load_file

    rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return rows, load_file(str(Path(out) / "adapter" / "adapter_model.safetensors"))


def assert_trains_like_fp32(rows16, ad16, rows32, ad32):
    """A bf16 run (``rows16``, ``ad16``) against the fp32 run of the same config: the tolerances
    of test_bf16_training_is_close_to_fp32_training's docstring."""
    assert {v.dtype for v in ad16.values()} == {torch.float32}  # saved in fp32
    assert ad16.keys() == ad32.keys()
    assert [r["step"] for r in rows16] == [r["step"] for r in rows32] == [1, 2, 3, 4]
    for r16, r32 in zip(rows16, rows32):
        for key, rel in (("loss", 0.01), ("loss_ce", 0.01), ("loss_kl", 0.05)):
            assert r16[key] == pytest.approx(r32[key], rel=rel), (key, r16, r32)
        assert r16["solution_tokens"] == r32["solution_tokens"]
    assert rows32[-1]["loss"] < rows32[0]["loss"]  # it trained: a difference would show

    def norm(tensors):
        return sum(float(t.float().pow(2).sum()) for t in tensors) ** 0.5

    rel = norm(ad16[k] - ad32[k] for k in ad32) / norm(ad32.values())
    assert rel < 0.10, rel
    # ... and it is not trivially close: the two runs did not produce the same bits.
    assert rel > 0


def _train(curated, model, out, dtype):
    from ssb.stages.distill.trainer import distill

    distill(distill_config(curated, model, out, dtype))
    return training_outputs(out)


def test_bf16_training_is_close_to_fp32_training(tiny_model_dir, tmp_path):
    """Same data, seed and steps (4) in float32 and in bfloat16 (weights bf16, Trainer bf16
    autocast, fp32 LoRA weights and losses).  Tolerances: the logged loss and its ce part
    within 1% relative (observed <= 0.012%), the small kl part within 5% (observed <= 0.6%);
    the adapter within 10% in relative L2 norm (observed 1.7%: AdamW's first steps are nearly
    sign(g), so entries of tiny gradient move differently)."""
    curated = write_curated(tmp_path / "curated",
                            [make_record(i, solution=s) for i, s in enumerate(SOLUTIONS)])
    rows32, ad32 = _train(curated, tiny_model_dir, tmp_path / "fp32", "float32")
    rows16, ad16 = _train(curated, tiny_model_dir, tmp_path / "bf16", "bfloat16")
    assert_trains_like_fp32(rows16, ad16, rows32, ad32)
