"""The transformers side of ``ssb distill``: the :class:`~transformers.Trainer` subclass whose
loss is :func:`ssb.stages.distill.step.distill_step`, its callbacks (metrics.jsonl, progress
events, the held-out loss), and the TrainingArguments that depend on the machine (CPU-only
device, checkpointing flags under this transformers version's names).

Everything here imports torch/transformers lazily, inside the functions:
:mod:`ssb.stages.distill.trainer` (the stage) imports this module at no cost.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssb.events import Reporter


def device_args() -> dict[str, Any]:
    """TrainingArguments for a machine whose only device is the CPU: ``use_cpu``.  Without it
    transformers refuses bf16 on CPU, and a multi-process launch (torchrun, ``accelerate launch
    --multi_gpu``) finds no device backend, so every process trains alone, unsynchronized, into
    the same OUT; with it the processes form one gloo group (DDP on CPU)."""
    import torch

    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU, ...
    has_device = accelerator.is_available() if accelerator is not None \
        else torch.cuda.is_available()
    return {} if has_device else {"use_cpu": True}


def _die_with_launcher() -> None:
    """torchrun (and ``accelerate launch``, which runs it) starts each worker in a session of
    its own, so a SIGKILL to the launcher's process group leaves the workers training on,
    unsupervised, into the same OUT, racing the rerun that resumes it.  Ask Linux to SIGKILL
    this worker when its launcher dies (:func:`ssb.processes.die_with_parent`); elsewhere
    nothing changes."""
    import os
    import signal

    from ssb.processes import die_with_parent

    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    if die_with_parent(None) and os.getppid() == 1:  # the launcher died before it was armed
        os.kill(os.getpid(), signal.SIGKILL)


def trainer_class():
    import torch
    from transformers import Trainer

    from ssb.stages.distill.step import distill_step

    class DistillTrainer(Trainer):
        """Trainer whose loss is the distillation step; everything else is stock.

        The objective of one optimizer step is the mean over *all* its solution tokens: every
        micro-batch (of every process) contributes its token sum divided by the step's token
        count, so batch 1 x accumulation 4, batch 4 x accumulation 1 and 2 processes x batch 2
        train the same thing (transformers' ``num_items_in_batch`` convention).
        """

        # compute_loss already divides by the step's token count: no division by grad_accum.
        loss_is_scaled_for_ga = True

        def __init__(self, *args, loss_terms, temperature: float, teacher: str,
                     logit_chunk: int, teacher_cache=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher_cache = teacher_cache
            self.loss_terms = loss_terms
            self.temperature = temperature
            self.teacher = teacher
            self.logit_chunk = logit_chunk
            if self.accelerator.num_processes > 1:
                _die_with_launcher()
            # Token-weighted sums of each term since the last log, and their token count.
            self._parts: dict[str, float] = defaultdict(float)
            self._tokens = 0

        def get_batch_samples(self, epoch_iterator, num_batches, *args, **kwargs):
            """The micro-batches of one optimizer step and their solution-token count, summed
            over every process (the stock count reads ``labels``, which a distill batch has
            not)."""
            batches, _ = super().get_batch_samples(epoch_iterator, num_batches, *args, **kwargs)
            # Shapes, not values: no device sync when the loader already placed the batches.
            count = torch.tensor(sum(b["target_ids"].shape[0] for b in batches),
                                 dtype=torch.long, device=self.args.device)
            if self.accelerator.num_processes > 1:
                # Every process calls this once per optimizer step (even batches), so the
                # collective lines up.
                count = self.accelerator.reduce(count, reduction="sum")
            return batches, count

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = distill_step(model, inputs, self.loss_terms, temperature=self.temperature,
                                  teacher=self.teacher, logit_chunk=self.logit_chunk,
                                  teacher_cache=self.teacher_cache)
            n = result.num_solution_tokens
            loss = result.loss
            if num_items_in_batch is not None:
                # This micro-batch's token sum over the step's token count.  DDP (and FSDP,
                # DeepSpeed) average gradients over processes, hence the factor: the average of
                # the processes' shares is then the global token mean.
                total = float(num_items_in_batch)
                loss = loss * (n * self.accelerator.num_processes / total)
            elif model.training:
                raise RuntimeError("DistillTrainer: no num_items_in_batch (this transformers "
                                   "version does not pass it; ssb needs transformers >= 4.46)")
            if model.training:
                for name, value in result.parts.items():
                    self._parts[name] += value * n
                self._tokens += n
            return (loss, None) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            # Each loss part as a token mean over the steps since the last log (all processes),
            # next to the Trainer's own loss / grad_norm / learning_rate / epoch.  Every process
            # logs at the same steps, so the reduction lines up.
            if "loss" in logs:
                names = [t.name for t in self.loss_terms]  # the same order on every process
                values = [self._parts[k] for k in names] + [float(self._tokens)]
                if self.accelerator.num_processes > 1:
                    values = self.accelerator.reduce(
                        torch.tensor(values, dtype=torch.float64, device=self.args.device),
                        reduction="sum").tolist()
                tokens = values[-1]
                if tokens:
                    for name, total in zip(names, values):
                        logs[f"loss_{name}"] = total / tokens
                    logs["solution_tokens"] = int(tokens)
                self._parts.clear()
                self._tokens = 0
            super().log(logs, start_time)

    return DistillTrainer


def stage_callbacks(metrics_path: Path, report: Reporter, heldout: "HeldOut | None"):
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
            info = f"loss {row['loss']:.4f}"
            if row["grad_norm"] is not None:
                info += f"  |g| {row['grad_norm']:.3f}"
            report.info(info)
            report.emit("log", message="", data={"metrics": row})

    class Progress(TrainerCallback):
        """Training progress as :mod:`ssb.events` (the CLI draws them; a notebook may not)."""

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                report.start("distill", total=state.max_steps, done=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                report.advance(1)

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                report.end()

    class HeldOutLoss(TrainerCallback):
        """The training objective on held-out records every ``eval_steps`` steps (and at the
        first and last step): a curve that is not one noisy micro-batch (heldout.jsonl)."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            assert heldout is not None
            if heldout.every and state.global_step % heldout.every == 0:
                heldout.measure(model, state.global_step, state.is_world_process_zero)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            assert heldout is not None
            heldout.measure(model, state.global_step, state.is_world_process_zero)

    callbacks = [MetricsJsonl(), Progress()]
    if heldout is not None:
        callbacks.append(HeldOutLoss())
    return callbacks


@dataclass
class HeldOut:
    """Held-out curated records and where their loss goes (one row per measurement)."""

    examples: list
    collator: Any
    terms: list
    temperature: float
    teacher: str
    logit_chunk: int
    batch_size: int
    every: int
    path: Path
    measured: set = field(default_factory=set)
    teacher_cache: Any = None  # a TeacherCache: the held-out teacher rows, computed once

    def loss(self, model) -> dict[str, float]:
        """Token-weighted mean of each term (kl, ce) over every held-out solution token."""
        import torch

        from ssb.stages.distill.step import distill_step

        was_training = model.training
        model.eval()
        totals: dict[str, float] = defaultdict(float)
        tokens = 0
        device = next(model.parameters()).device
        try:
            with torch.no_grad():
                for start in range(0, len(self.examples), self.batch_size):
                    batch = self.collator(self.examples[start:start + self.batch_size])
                    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
                    result = distill_step(model, batch, self.terms, temperature=self.temperature,
                                          teacher=self.teacher, logit_chunk=self.logit_chunk,
                                          teacher_cache=self.teacher_cache)
                    n = result.num_solution_tokens
                    for name, value in result.parts.items():
                        totals[name] += value * n
                    tokens += n
        finally:
            model.train(was_training)
        return {k: v / max(tokens, 1) for k, v in totals.items()} | {"tokens": tokens}

    def measure(self, model, step: int, main: bool) -> None:
        if step in self.measured:
            return
        self.measured.add(step)
        values = self.loss(model)
        if main:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")


def checkpointing_args(enabled: bool) -> dict[str, Any]:
    """Gradient (activation) checkpointing flags under this transformers version's names."""
    import inspect

    from transformers import TrainingArguments

    fields = inspect.signature(TrainingArguments.__init__).parameters
    prefix = "activation_checkpointing" if "activation_checkpointing" in fields \
        else "gradient_checkpointing"
    # Non-reentrant checkpointing works with a frozen base (no input-grad hook needed).
    return {prefix: enabled, f"{prefix}_kwargs": {"use_reentrant": False}}
