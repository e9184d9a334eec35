"""LoRA logit distillation on transformers' Trainer.

The Trainer brings checkpoints, ``resume_from_checkpoint``, ``report_to``, gradient accumulation,
gradient checkpointing, mixed precision and multi-GPU (``accelerate launch`` / ``torchrun``);
:class:`DistillTrainer` only replaces ``compute_loss`` with :func:`ssb.distill.step.distill_step`.

Outputs in ``OUT/``: ``adapter/`` (plain ``PeftModel.from_pretrained``), ``metrics.jsonl`` (one
object per logged step), ``training.png``, ``manifest.json``, and ``checkpoints/`` (the Trainer's,
used to resume: rerunning the same command continues from the last one).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ssb.errors import SsbError

log = logging.getLogger("ssb.distill")

SHORT_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
                 "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
PAPER_PRESET: dict[str, Any] = {
    "lora_r": 32, "lora_alpha": 32, "target_modules": "q,k,v,o,gate,up,down", "lr": 2e-4,
    "batch_size": 4, "epochs": 3.0, "temperature": 2.0, "loss": "kl=1,ce=0",
}
# Quick CPU runs of the small model: a smaller adapter, one epoch, short sequences.
SMOKE_PRESET: dict[str, Any] = {
    "lora_r": 8, "lora_alpha": 16, "epochs": 1.0, "batch_size": 1, "grad_accum": 4,
    "max_length": 768,
}
PRESETS = {"paper": PAPER_PRESET, "smoke": SMOKE_PRESET}


@dataclass
class DistillConfig:
    """Everything ``ssb distill`` takes (the defaults are the paper's hyperparameters)."""

    curated: str
    model: str
    out: str
    lora_r: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "q,k,v,o,gate,up,down"
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_steps: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    temperature: float = 2.0
    loss: str = "kl=1,ce=0"
    teacher: str = "online"
    teacher_store: str | None = None
    max_length: int | None = 2048
    overlong: str = "truncate"
    seed: int = 0
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    logit_chunk: int = 256
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    report_to: str = "none"
    preset: str | None = None
    force: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def target_module_names(spec: str) -> list[str]:
    """``"q,k,v,o,gate,up,down"`` (short or full names) -> module names for peft."""
    names = [SHORT_TARGETS.get(n.strip(), n.strip()) for n in spec.split(",") if n.strip()]
    if not names:
        raise SsbError("--target-modules is empty")
    if any(n in ("lm_head", "embed_tokens") for n in names):
        raise SsbError("--target-modules: lm_head/embed_tokens are shared with the online "
                       "teacher and must stay frozen; adapt the transformer blocks")
    return names


# -- the Trainer -------------------------------------------------------------------------------

def _trainer_class():
    from transformers import Trainer

    from ssb.distill.step import distill_step

    class DistillTrainer(Trainer):
        """Trainer whose loss is the distillation step; everything else is stock."""

        def __init__(self, *args, loss_terms, temperature: float, teacher: str,
                     logit_chunk: int, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_terms = loss_terms
            self.temperature = temperature
            self.teacher = teacher
            self.logit_chunk = logit_chunk
            # distill_step returns a per-batch mean: let the Trainer divide by grad_accum.
            self.loss_is_scaled_for_ga = False
            self._parts: dict[str, float] = defaultdict(float)
            self._parts_count = 0
            self._tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = distill_step(model, inputs, self.loss_terms, temperature=self.temperature,
                                  teacher=self.teacher, logit_chunk=self.logit_chunk)
            if model.training:
                for name, value in result.parts.items():
                    self._parts[name] += value
                self._parts_count += 1
                self._tokens += result.num_solution_tokens
            return (result.loss, None) if return_outputs else result.loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            # Each loss part averaged over the micro-batches since the last log, next to the
            # Trainer's own loss / grad_norm / learning_rate / epoch.
            if "loss" in logs and self._parts_count:
                for name, total in self._parts.items():
                    logs[f"loss_{name}"] = total / self._parts_count
                logs["solution_tokens"] = self._tokens
                self._parts.clear()
                self._parts_count = 0
                self._tokens = 0
            super().log(logs, start_time)

    return DistillTrainer


def _callbacks(metrics_path: Path, progress: bool):
    from transformers import TrainerCallback

    class MetricsJsonl(TrainerCallback):
        """Appends one JSON object per logged training step to metrics.jsonl (main process)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            row = {"step": state.global_step, "epoch": logs.get("epoch"),
                   "loss": logs.get("loss"), "grad_norm": logs.get("grad_norm"),
                   "lr": logs.get("learning_rate"),
                   "solution_tokens": logs.get("solution_tokens")}
            row.update({k: v for k, v in logs.items() if k.startswith("loss_")})
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    class RichProgress(TrainerCallback):
        def __init__(self):
            self._progress = None
            self._task = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._progress = Progress(
                TextColumn("[bold]distill"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task("distill", total=state.max_steps,
                                                 completed=state.global_step, info="")

        def on_step_end(self, args, state, control, **kwargs):
            if self._progress is not None:
                self._progress.update(self._task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self._progress is not None and logs and "loss" in logs:
                info = f"loss {logs['loss']:.4f}"
                if logs.get("grad_norm") is not None:
                    info += f"  |g| {logs['grad_norm']:.3f}"
                self._progress.update(self._task, info=info)

        def on_train_end(self, args, state, control, **kwargs):
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    return [MetricsJsonl()] + ([RichProgress()] if progress else [])


# -- outputs -----------------------------------------------------------------------------------

def read_metrics(path: Path) -> list[dict[str, Any]]:
    from ssb.journal import read_jsonl

    return list(read_jsonl(path, tolerate_torn_tail=True)) if path.exists() else []


def _keep_metrics_until(path: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint (those steps run again)."""
    from ssb.journal import atomic_write_text

    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def plot_training(metrics_path: Path, out_png: Path) -> None:
    """loss (and each part) and grad-norm curves from metrics.jsonl, written atomically."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [r["step"] for r in rows]
    ax_loss.plot(steps, [r["loss"] for r in rows], label="loss", linewidth=2)
    for key in sorted({k for r in rows for k in r if k.startswith("loss_")}):
        ax_loss.plot(steps, [r.get(key) for r in rows], label=key, linestyle="--")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_grad.plot(steps, [r.get("grad_norm") for r in rows], color="tab:red")
    ax_grad.set_xlabel("step")
    ax_grad.set_title("grad norm")
    fig.tight_layout()
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out_png)


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing, or None.

    The Trainer writes ``trainer_state.json`` last, so a process killed mid-save leaves a
    ``checkpoint-N`` without a readable one; such leftovers are removed (resuming from them
    fails) and the previous complete checkpoint is used.
    """
    import json
    import shutil

    if not checkpoints.is_dir():
        return None
    found = []
    for d in checkpoints.iterdir():
        step = d.name.removeprefix("checkpoint-")
        if d.is_dir() and d.name.startswith("checkpoint-") and step.isdigit():
            found.append((int(step), d))
    for _, d in sorted(found, reverse=True):
        try:
            json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
            return str(d)
        except (FileNotFoundError, json.JSONDecodeError):
            log.warning("removing %s: written only in part (the run was killed while saving)", d)
            shutil.rmtree(d, ignore_errors=True)
    return None


def _checkpointing_args(enabled: bool) -> dict[str, Any]:
    """Gradient (activation) checkpointing flags under this transformers version's names."""
    import inspect

    from transformers import TrainingArguments

    fields = inspect.signature(TrainingArguments.__init__).parameters
    prefix = "activation_checkpointing" if "activation_checkpointing" in fields \
        else "gradient_checkpointing"
    # Non-reentrant checkpointing works with a frozen base (no input-grad hook needed).
    return {prefix: enabled, f"{prefix}_kwargs": {"use_reentrant": False}}


# -- the run -----------------------------------------------------------------------------------

def run_distill(cfg: DistillConfig, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train (or resume) a LoRA adapter; returns a summary (also stored in the manifest)."""
    import torch
    from transformers import PrinterCallback, TrainingArguments, set_seed

    from ssb.config import check_resume, config_changes, finish_manifest, jsonable, \
        load_manifest, sha256_file, start_manifest
    from ssb.distill.alignment import align_records, curated_path, load_curated
    from ssb.distill.batching import AlignedDataset, DistillCollator
    from ssb.distill.step import check_terms, describe_terms, resolve_loss_terms
    from ssb.models import load_causal_lm, load_tokenizer, resolve, resolve_dtype
    from ssb.teacher import TopKStore, tokenizer_fingerprint

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = out / "checkpoints"
    metrics_path = out / "metrics.jsonl"
    adapter_dir = out / "adapter"
    config = {k: v for k, v in cfg.to_dict().items() if k not in ("extra",)}

    # Resume or start over: a changed config is refused unless --force, which starts afresh.
    old = load_manifest(out)
    changed = bool(old and config_changes(old.get("config", {}), jsonable(config)))
    resuming = check_resume(out, "distill", config, cfg.force)
    if changed:  # --force with a new config: the old checkpoints do not belong to this run
        for stale in (checkpoints, adapter_dir):
            shutil.rmtree(stale, ignore_errors=True)
        metrics_path.unlink(missing_ok=True)
        resuming = False
    if resuming and old and old.get("finished") and (adapter_dir / "adapter_config.json").exists():
        return {**old.get("summary", {}), "already_complete": True, "out": str(out)}

    # Inputs: loss terms (registry), curated records -> aligned token ids, teacher store.
    if cfg.teacher not in ("online", "offline", "none"):
        raise SsbError(f"--teacher must be online, offline or none, got {cfg.teacher!r}")
    terms = resolve_loss_terms(cfg.loss)
    check_terms(terms, cfg.teacher)
    curated_file = curated_path(cfg.curated)
    records = load_curated(curated_file)
    ref = resolve(cfg.model)
    tokenizer = load_tokenizer(ref)
    examples, report = align_records(tokenizer, records, max_length=cfg.max_length,
                                     overlong=cfg.overlong)  # type: ignore[arg-type]
    if report.truncated or report.dropped:
        log.warning("--max-length %s: %d solution(s) truncated, %d record(s) dropped (%s)",
                    cfg.max_length, len(report.truncated), len(report.dropped), cfg.overlong)
    if not examples:
        raise SsbError(f"no record fits --max-length {cfg.max_length}")
    store = None
    if cfg.teacher == "offline":
        if not cfg.teacher_store:
            raise SsbError("--teacher offline needs --teacher-store DIR (ssb teacher-logits)")
        store = TopKStore(cfg.teacher_store)

    manifest = start_manifest(out, "distill", config, inputs=[curated_file], seed=cfg.seed)

    # Model: base weights frozen, LoRA adapter on top (zero-initialized B: starts as the base).
    from peft import LoraConfig, get_peft_model

    set_seed(cfg.seed)
    torch_dtype = resolve_dtype(cfg.dtype)
    base = load_causal_lm(ref, dtype=cfg.dtype)
    vocab_size = base.get_output_embeddings().weight.shape[0]
    if store is not None:
        store.check_compatible(temperature=cfg.temperature, vocab_size=vocab_size,
                               tokenizer_sha256=tokenizer_fingerprint(tokenizer),
                               curated_sha256=sha256_file(curated_file))
        for e in examples:  # fail before training, not at step 900
            store.rows(e.id, e.solution_ids)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target_module_names(cfg.target_modules),
                      task_type="CAUSAL_LM", bias="none")
    model = get_peft_model(base, lora)

    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=[r for r in cfg.report_to.split(",") if r] or "none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=torch_dtype == torch.bfloat16,
        fp16=torch_dtype == torch.float16,
        remove_unused_columns=False,
        label_names=[],
        disable_tqdm=True,  # rich progress instead
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **_checkpointing_args(cfg.gradient_checkpointing),
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=AlignedDataset(examples),
        data_collator=DistillCollator(pad_id, teacher=cfg.teacher, store=store),
        callbacks=[*_callbacks(metrics_path, cfg.progress), *callbacks],
        loss_terms=terms, temperature=cfg.temperature, teacher=cfg.teacher,
        logit_chunk=cfg.logit_chunk,
    )

    trainer.remove_callback(PrinterCallback)  # it prints every log dict; we have metrics.jsonl
    last = last_complete_checkpoint(checkpoints)
    if last:
        _keep_metrics_until(metrics_path, int(Path(last).name.split("-")[-1]))
        log.warning("resuming from %s", last)
    elif metrics_path.exists():
        metrics_path.unlink()
    result = trainer.train(resume_from_checkpoint=last)

    # Outputs: adapter (safetensors, no pickle), curves, manifest.
    if trainer.is_world_process_zero():
        from accelerate.utils import extract_model_from_parallel

        extract_model_from_parallel(trainer.model).save_pretrained(
            str(adapter_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(adapter_dir))
        rows = read_metrics(metrics_path)
        if rows:
            plot_training(metrics_path, out / "training.png")
        summary = {
            "out": str(out), "adapter": str(adapter_dir), "steps": trainer.state.global_step,
            "resumed_from": last, "train_loss": result.training_loss,
            "first_loss": rows[0]["loss"] if rows else None,
            "last_loss": rows[-1]["loss"] if rows else None,
            "loss_terms": describe_terms(terms), "teacher": cfg.teacher,
            "alignment": report.to_dict(), "vocab_size": int(vocab_size),
        }
        finish_manifest(out, manifest, summary=summary)
        return summary
    return {"out": str(out)}
