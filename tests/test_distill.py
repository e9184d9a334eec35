"""Training on the tiny model: the loss falls, outputs are right, resume is exact; the real small
model distills on CPU (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_alignment import SYSTEM, make_record, write_curated


def _config(curated, model, out, **overrides):
    from ssb.stages.distill.trainer import DistillConfig

    base = dict(curated=str(curated), model=str(model), out=str(out), lora_r=8, lora_alpha=16,
                lora_dropout=0.0, batch_size=2, epochs=1.0, lr=2e-2, temperature=2.0,
                loss="kl=1,ce=0", save_steps=1000, max_length=256)
    base.update(overrides)
    return DistillConfig(**base)


def _run(cfg, **kwargs) -> dict:
    from ssb.stages.distill.trainer import distill

    return distill(cfg, **kwargs).summary


def _adapter_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):

    root = tmp_path_factory.mktemp("distill")
    curated = write_curated(root / "curated", [make_record(i) for i in range(2)])
    held = write_curated(root / "held", [make_record(i) for i in range(2, 4)])
    cfg = _config(curated, tiny_model_dir, root / "out", max_steps=8, lora_dropout=0.05, lr=2e-3,
                  eval_records=str(held), eval_steps=4)
    return cfg, _run(cfg)


def test_loss_decreases_over_a_few_steps(trained):
    cfg, summary = trained
    rows = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    losses = [r["loss"] for r in rows]
    assert losses[-1] < 0.5 * losses[0], losses
    assert summary["first_loss"] == losses[0] and summary["last_loss"] == losses[-1]


def test_outputs_metrics_plot_manifest(trained):
    cfg, summary = trained
    out = Path(cfg.out)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "loss", "loss_kl", "loss_ce", "grad_norm", "lr", "solution_tokens",
            "epoch"} <= set(row)
    assert row["loss"] == pytest.approx(row["loss_kl"])  # ce has weight 0 but is logged
    assert row["solution_tokens"] == summary["alignment"]["solution_tokens"]  # both examples
    assert not (out / "training.png").exists()  # charts are the CLI's, drawn from the data:
    from ssb.commands.charts import plot_training

    plot_training(out / "metrics.jsonl", out / "training.png", out / "heldout.jsonl")
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Held-out records (never trained on) measured at the start, every 4 steps and the end.
    held = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert [r["step"] for r in held] == [0, 4, 8]
    assert all(r["tokens"] > 0 and r["kl"] >= 0 and r["ce"] > 0 for r in held)
    assert summary["heldout_first"]["step"] == 0 and summary["heldout_last"]["step"] == 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "distill" and manifest["finished"]
    assert manifest["summary"]["steps"] == 8 and manifest["config"]["loss"] == "kl=1,ce=0"
    assert not list((out / "adapter").glob("*.bin"))  # safetensors only


def test_adapter_loads_with_plain_peft_and_changes_the_model(trained, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg, _ = trained
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
    model = PeftModel.from_pretrained(base, str(Path(cfg.out) / "adapter")).eval()
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert model.peft_config["default"].r == 8
    assert not torch.allclose(before, after, atol=1e-4)
    lora_b = [v for k, v in _adapter_tensors(Path(cfg.out) / "adapter").items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_the_same_adapter(tiny_model_dir, tmp_path):
    """Tolerance: 1e-6 absolute on every adapter weight (fp32 CPU; observed: bit-identical)."""
    from transformers import TrainerCallback


    curated = write_curated(tmp_path / "curated", [make_record(i) for i in range(4)])
    # 4 examples, batch 2, 2 epochs = 4 steps; checkpoint every 2; LoRA dropout exercises the
    # restored RNG state, shuffling the restored data order.
    common = dict(epochs=2.0, save_steps=2, lora_dropout=0.1, lr=1e-2)
    straight = _run(_config(curated, tiny_model_dir, tmp_path / "straight", **common))
    assert straight["steps"] == 4

    class StopAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise Interrupt

    cfg = _config(curated, tiny_model_dir, tmp_path / "resumed", **common)
    with pytest.raises(Interrupt):
        _run(cfg, callbacks=[StopAfterSave()])
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "resumed" / "adapter").exists()
    resumed = _run(cfg)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 4
    a = _adapter_tensors(tmp_path / "straight" / "adapter")
    b = _adapter_tensors(tmp_path / "resumed" / "adapter")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    rows = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # A finished run is not trained again.
    assert _run(cfg)["already_complete"] is True


def test_cli_offline_teacher_preset_and_changed_config(ssb_cli, tiny_model_dir, tmp_path):
    curated = write_curated(tmp_path / "curated", [make_record(i) for i in range(2)])
    store = tmp_path / "store"
    code, _, err = ssb_cli("teacher-logits", "--curated", str(curated), "--model",
                           str(tiny_model_dir), "--top-k", "64", "--temperature", "2",
                           "--out", str(store), "--no-progress")
    assert code == 0, err
    out = tmp_path / "run"
    args = ["distill", "--curated", str(curated), "--model", str(tiny_model_dir), "--out",
            str(out), "--preset", "smoke", "--lora-r", "4", "--max-steps", "2",
            "--teacher", "offline", "--teacher-store", str(store), "--no-progress", "--json"]
    code, stdout, err = ssb_cli(*args)
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["teacher"] == "offline"
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["lora_r"] == 4 and config["lora_alpha"] == 16  # flag wins, preset fills in
    assert config["batch_size"] == 1 and config["grad_accum"] == 4
    # Another temperature than the store's is refused before training.
    code, _, err = ssb_cli(*args[:-2], "--temperature", "1", "--out", str(tmp_path / "t1"))
    assert code == 2 and "temperature" in err
    # Same OUT with a changed config is refused unless --accept-changed-config (or the old
    # --force, which meant that for distill: start over under the new config).
    code, _, err = ssb_cli(*args, "--lr", "1e-3")
    assert code == 2 and "different config" in err
    code, _, err = ssb_cli(*args, "--lr", "1e-3", "--accept-changed-config")
    assert code == 0, err
    code, _, err = ssb_cli(*args, "--lr", "2e-3", "--force")
    assert code == 0, err
    assert "warning: --force is deprecated; for `ssb distill` it means --accept-changed-config" \
        in err


@pytest.mark.slow
def test_real_small_model_distills_on_cpu(small_gguf, shared_data, tmp_path):
    """Qwen2.5-Coder-0.5B (GGUF -> cached HF dir), fp32 CPU: a few GSM8K records, KL falls."""
    from ssb.records import CuratedRecord, Rollout

    rows = [json.loads(line) for line in
            (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()[:2]]
    records = []
    for i, row in enumerate(rows):
        steps, answer = row["answer"].split("####")
        solution = steps.replace("<<", "").replace(">>", " ").strip() + \
            f"\nThe answer is \\boxed{{{answer.strip()}}}."
        right = Rollout(text=solution, num_tokens=50, finish_reason="stop",
                        extracted=answer.strip(), correct=True)
        wrong = Rollout(text="The answer is \\boxed{3}.", num_tokens=8, finish_reason="stop",
                        extracted="3", correct=False)
        hinted = (f"{row['question']}\n\nA correct response:\n{solution}\n\nA response marked "
                  "wrong:\nThe answer is \\boxed{3}.\n\nWrite a complete step-by-step solution.")
        records.append(CuratedRecord(
            id=f"gsm8k-{i}", question=row["question"], gold=answer.strip(), dataset="gsm8k",
            domain="gsm8k", template="test@1",
            student_messages=[{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": row["question"]}],
            teacher_messages=[{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": hinted}],
            solution=solution, correct_rollout=right, wrong_rollout=wrong,
            rollout_answers=[answer.strip(), "3"], rollout_correct=[True, False]))
    curated = write_curated(tmp_path / "curated", records)
    cfg = _config(curated, small_gguf, tmp_path / "out", lora_r=8, lora_alpha=16, lr=1e-3,
                  batch_size=2, max_steps=4, max_length=320, dtype="float32",
                  target_modules="q,v")
    summary = _run(cfg)
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().split("\n")
            if x]
    losses = [r["loss"] for r in rows]
    assert losses[0] > 0.01  # the hint really changes the teacher's distribution
    assert losses[-1] < 0.8 * losses[0], losses
    assert summary["vocab_size"] == 151_936


def test_resume_skips_a_checkpoint_killed_mid_save(tmp_path):
    """A SIGKILL during the Trainer's save leaves checkpoint-N without trainer_state.json (it is
    written last); resume must use the newest complete checkpoint, not crash on the partial one."""
    from ssb.stages.distill.trainer import last_complete_checkpoint

    ckpts = tmp_path / "checkpoints"
    for step, state in ((1, '{"global_step": 1}'), (2, '{"global_step": 2}'), (3, None),
                        (10, '{"global_st')):
        d = ckpts / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "adapter_model.safetensors").write_bytes(b"x")
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(ckpts) == str(ckpts / "checkpoint-2")
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-1", "checkpoint-2"]
    assert last_complete_checkpoint(tmp_path / "none") is None
