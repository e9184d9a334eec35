"""LoRA logit distillation on transformers' Trainer.

The Trainer brings checkpoints, ``resume_from_checkpoint``, ``report_to``, gradient accumulation,
gradient checkpointing, mixed precision and multi-GPU (``accelerate launch`` / ``torchrun``);
:class:`DistillTrainer` (:mod:`ssb.stages.distill.hf_trainer`) only replaces ``compute_loss`` with :func:`ssb.stages.distill.step.distill_step`.

Outputs in ``OUT/``: ``adapter/`` (plain ``PeftModel.from_pretrained``, with a model card,
``README.md``: :mod:`ssb.modelcard`), ``metrics.jsonl`` (one object per logged step),
``heldout.jsonl``, ``manifest.json``, ``tensorboard/`` (with ``--report-to tensorboard``), and
``checkpoints/`` (the Trainer's, used to resume: rerunning the same command continues from the
last one).  Charts (``training.png``) are the CLI's, drawn from ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ssb.errors import SsbError
from ssb.events import EventCallback, Reporter
from ssb.option_groups import ACCEPT_CHANGED_CONFIG, FORCE, MODEL, OUT, RESTART, SEED
from ssb.options import ConfigError, StageConfig, option
from ssb.stages.distill.hf_trainer import (HeldOut, checkpointing_args, device_args,
                                         stage_callbacks, trainer_class)

log = logging.getLogger("ssb.distill")

SHORT_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
                 "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                 "constant_with_warmup", "inverse_sqrt", "cosine_with_min_lr",
                 "warmup_stable_decay")


@dataclass
class DistillConfig(StageConfig):
    """Everything ``ssb distill`` takes (the defaults are the paper's hyperparameters)."""

    COMMAND: ClassVar[str] = "distill"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # The paper: r=32 a=32 on every projection, lr 2e-4, batch 4, 3 epochs, KD T=2, kl=1.
        "paper": {"lora_r": 32, "lora_alpha": 32, "target_modules": "q,k,v,o,gate,up,down",
                  "lr": 2e-4, "batch_size": 4, "epochs": 3.0, "temperature": 2.0,
                  "loss": "kl=1,ce=0"},
        # Quick CPU runs of the small model: a smaller adapter, one epoch, short sequences.
        "smoke": {"lora_r": 8, "lora_alpha": 16, "epochs": 1.0, "batch_size": 1,
                  "grad_accum": 4, "max_length": 768},
    }

    curated: str = option(help="Curate output DIR (curated.jsonl) or the jsonl file.")
    model: str = MODEL(note="the base model, also the online teacher")
    out: str = OUT(note="adapter/ (with README.md), metrics.jsonl, heldout.jsonl, "
                   "manifest.json, checkpoints/")
    lora_r: int = option(32, ge=1, help="LoRA rank.")
    lora_alpha: int = option(32, gt=0, help="LoRA alpha.")
    lora_dropout: float = option(0.05, ge=0, lt=1, help="LoRA dropout.")
    target_modules: str = option("q,k,v,o,gate,up,down",
                                 help="Comma-separated modules (q,k,v,o,gate,up,down or full "
                                 "names).")
    epochs: float = option(3.0, gt=0, help="Training epochs.")
    max_steps: int = option(-1, ge=-1, help="Stop after this many optimizer steps (-1: use "
                            "--epochs).")
    batch_size: int = option(4, ge=1, help="Examples per device per micro-batch.")
    grad_accum: int = option(1, ge=1, help="Gradient accumulation steps.")
    lr: float = option(2e-4, gt=0, help="Peak learning rate.")
    lr_scheduler: str = option("linear", choices=LR_SCHEDULERS,
                               help="transformers scheduler name.")
    warmup_steps: float = option(0.0, ge=0, help="Warmup steps (a value < 1 is a ratio).")
    weight_decay: float = option(0.0, ge=0, help="AdamW weight decay.")
    max_grad_norm: float = option(1.0, gt=0, help="Gradient clipping norm.")
    temperature: float = option(2.0, gt=0, help="KD temperature T (KL terms x T^2).")
    loss: str = option("kl=1,ce=0", help="Weighted losses by registry name, e.g. kl=1,ce=0.5 "
                       "or jsd=1,jsd.beta=0.3.")
    teacher: str = option("online", choices=("online", "offline", "none"),
                          help="online (base model, adapter off), offline (top-k store) or "
                          "none (ce only).")
    teacher_store: str | None = option(None, help="Store DIR from `ssb teacher-logits` (with "
                                       "--teacher offline).")
    max_length: int | None = option(2048, ge=8, help="Max tokens of the longer view; see "
                                    "--overlong.")
    overlong: str = option("truncate", choices=("truncate", "drop"),
                           help="Too long: truncate the solution (same cut in both views) or "
                           "drop the record.")
    seed: int = SEED(0, note="LoRA init, data order, dropout")
    dtype: str = option("auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16.")
    gradient_checkpointing: bool = option(False, help="Recompute activations in backward "
                                          "(less memory).")
    teacher_cache_gib: float = option(
        4.0, ge=0, resume=False,
        help="Keep the frozen online teacher's hidden states at solution positions (CPU "
        "memory, up to this many GiB per process) after their first computation: epochs after "
        "the first and held-out measurements skip the teacher forward (about half a step). 0: "
        "recompute every time.")
    logit_chunk: int = option(256, ge=1, resume=False,
                              help="Solution tokens per LM-head/loss chunk (memory knob).")
    save_steps: int = option(50, ge=1, resume=False,
                             help="Checkpoint every N steps (resume point).")
    save_total_limit: int = option(2, ge=1, resume=False, help="Checkpoints kept.")
    logging_steps: int = option(1, ge=1, resume=False, help="Log metrics every N steps.")
    eval_records: str | None = option(None, help="Held-out curated records (DIR or jsonl), "
                                      "never trained on: their loss is measured every "
                                      "--eval-steps steps (heldout.jsonl).")
    eval_steps: int = option(0, ge=0, help="Measure the held-out loss every N optimizer steps "
                             "(0: only before and after training, when --eval-records is set).")
    report_to: str = option("none", resume=False,
                            help="Experiment trackers, comma-separated: none, tensorboard, "
                            "wandb, trackio (each an extra: pip install "
                            "'softboot[tensorboard]').")
    restart: bool = RESTART()
    accept_changed_config: bool = ACCEPT_CHANGED_CONFIG(
        note="checkpoints of another config cannot be resumed: training starts over")
    force: bool = FORCE("accept_changed_config", "start over when the config changed")

    def check(self) -> None:
        target_module_names(self.target_modules)
        from ssb.tracking import parse_report_to

        parse_report_to(self.report_to)  # unknown or not installed: refused before training
        from ssb.losses import check_loss_params, parse_loss_spec
        from ssb.plugins import get_registry

        registry = get_registry()
        terms = parse_loss_spec(self.loss)
        losses = [registry.loss(name) for name, _, _ in terms]
        for (name, _, params), spec in zip(terms, losses):  # refused now, not at step 1
            check_loss_params(name, spec.fn, params)
        if all(w == 0 for _, w, _ in terms):
            raise ConfigError("--loss: every weight is 0, nothing to train on")
        # Weight-0 terms are still computed (and logged), so they need their inputs too.
        needs = [spec.name for spec in losses if spec.needs_teacher]
        if self.teacher == "none" and needs:
            raise ConfigError(f"--loss {', '.join(needs)} needs a teacher "
                              "(--teacher online|offline)")
        if self.teacher == "offline" and not self.teacher_store:
            raise ConfigError("--teacher offline needs --teacher-store DIR (ssb teacher-logits)")


def target_module_names(spec: str) -> list[str]:
    """``"q,k,v,o,gate,up,down"`` (short or full names) -> module names for peft."""
    names = [SHORT_TARGETS.get(n.strip(), n.strip()) for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError("--target-modules is empty")
    if any(n in ("lm_head", "embed_tokens") for n in names):
        raise ConfigError("--target-modules: lm_head/embed_tokens are shared with the online "
                       "teacher and must stay frozen; adapt the transformer blocks")
    return names


# -- outputs -----------------------------------------------------------------------------------

def read_metrics(path: Path) -> list[dict[str, Any]]:
    from ssb.journal import read_jsonl

    return list(read_jsonl(path, tolerate_torn_tail=True)) if path.exists() else []


def _keep_metrics_until(path: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint (those steps run again)."""
    from ssb.journal import atomic_write_text

    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


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


# -- the run -----------------------------------------------------------------------------------

@dataclass
class DistillResult:
    """What :func:`distill` returns (``summary`` is also stored in ``manifest.json``)."""

    out: Path
    summary: dict[str, Any]

    @property
    def adapter(self) -> Path:
        return self.out / "adapter"


def _is_main_process() -> bool:
    """Rank 0 of an ``accelerate launch`` / ``torchrun`` job (or a plain single process): the one
    process that locks the output directory and writes the manifest, metrics and adapter."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


# What `--restart` deletes in OUT (with manifest.json); nothing else there is touched.
DISTILL_OUTPUTS = ("checkpoints", "adapter", "metrics.jsonl", "heldout.jsonl", "training.png",
                   "tensorboard")


def distill(cfg: DistillConfig, *, on_event: EventCallback | None = None,
            callbacks: Sequence[Any] = ()) -> DistillResult:
    """Train (or resume) a LoRA adapter in ``cfg.out``; ``callbacks``: extra TrainerCallbacks."""
    from contextlib import nullcontext

    from ssb.stages.distill.alignment import curated_path
    from ssb.stage import StageOutput, load_manifest

    cfg = cfg.validate()
    out = Path(cfg.out)
    curated_file = curated_path(cfg.curated)
    main = _is_main_process()
    identity = cfg.identity()
    stage = StageOutput(out, "distill", identity, cfg.manifest(),
                        force=cfg.accept_changed_config, restart=cfg.restart,
                        outputs=DISTILL_OUTPUTS, inputs=[curated_file], seed=cfg.seed)
    if not main and not cfg.restart:  # workers read the run's state; rank 0 owns the directory
        from ssb.stage import check_resume

        check_resume(out, "distill", identity, cfg.accept_changed_config)
    with stage if main else nullcontext(stage):
        return _distill_locked(cfg, stage if main else None, Reporter("distill", on_event),
                               callbacks, previous=load_manifest(out) if not main
                               else stage.previous)


def _distill_locked(cfg: DistillConfig, stage: Any, report_events: Reporter,
                    callbacks: Sequence[Any],
                    previous: dict[str, Any] | None) -> DistillResult:
    import torch
    from transformers import PrinterCallback, TrainingArguments, set_seed

    from ssb.stages.distill.alignment import align_records, curated_path, load_curated
    from ssb.stages.distill.batching import AlignedDataset, DistillCollator
    from ssb.stages.distill.step import check_terms, describe_terms, resolve_loss_terms
    from ssb.models import load_causal_lm, load_tokenizer, resolve, resolve_dtype
    from ssb.stage import sha256_file
    from ssb.stages.distill.teacher import TopKStore, tokenizer_fingerprint

    out = Path(cfg.out)
    checkpoints = out / "checkpoints"
    metrics_path = out / "metrics.jsonl"
    heldout_path = out / "heldout.jsonl"
    adapter_dir = out / "adapter"

    # Resume or start over: a changed config is refused unless --accept-changed-config, which
    # starts afresh (--restart has already deleted DISTILL_OUTPUTS).
    if stage is not None and stage.identity_changed:
        for stale in (checkpoints, adapter_dir):  # they do not belong to this config
            shutil.rmtree(stale, ignore_errors=True)
        metrics_path.unlink(missing_ok=True)
        heldout_path.unlink(missing_ok=True)
    elif previous and previous.get("finished") and (adapter_dir / "adapter_config.json").exists():
        return DistillResult(out, {**previous.get("summary", {}), "already_complete": True,
                                   "out": str(out)})

    # Inputs: loss terms (registry), curated records -> aligned token ids, teacher store.
    terms = resolve_loss_terms(cfg.loss)
    check_terms(terms, cfg.teacher)
    curated_file = curated_path(cfg.curated)
    records = load_curated(curated_file)
    _check_one_template(records, curated_file)
    ref = resolve(cfg.model)
    tokenizer = load_tokenizer(ref)
    examples, report = align_records(tokenizer, records, max_length=cfg.max_length,
                                     overlong=cfg.overlong)  # type: ignore[arg-type]
    if report.truncated or report.dropped:
        log.warning("--max-length %s: %d solution(s) truncated, %d record(s) dropped (%s)",
                    cfg.max_length, len(report.truncated), len(report.dropped), cfg.overlong)
    if not examples:
        raise SsbError(f"no record fits --max-length {cfg.max_length}")
    heldout_examples = []
    if cfg.eval_records:
        held_records = load_curated(curated_path(cfg.eval_records))
        train_ids = {r.id for r in records}
        overlap = [r.id for r in held_records if r.id in train_ids]
        if overlap:
            raise SsbError(f"--eval-records shares {len(overlap)} record(s) with --curated "
                           f"(e.g. {overlap[0]!r}): held-out records must not be trained on")
        heldout_examples, _ = align_records(tokenizer, held_records, max_length=cfg.max_length,
                                            overlong=cfg.overlong)  # type: ignore[arg-type]
    store = None
    if cfg.teacher == "offline":
        store = TopKStore(cfg.teacher_store)

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
    try:
        model = get_peft_model(base, lora)
    except ValueError as exc:  # e.g. a --target-modules name the model does not have
        raise ConfigError(f"--target-modules {cfg.target_modules}: {exc}") from None

    from ssb.tracking import trainer_reporting

    report_to, tracker_callbacks, tracker_args = trainer_reporting(cfg.report_to, out)
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
        report_to=report_to,
        **tracker_args,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=torch_dtype == torch.bfloat16,
        fp16=torch_dtype == torch.float16,
        remove_unused_columns=False,
        label_names=[],
        disable_tqdm=True,  # rich progress instead
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **checkpointing_args(cfg.gradient_checkpointing),
        **device_args(),
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    # One cache for the train and held-out teacher rows (an example is known by its exact
    # teacher view, so the two sets never mix).
    from ssb.stages.distill.teacher import TeacherCache

    teacher_cache = TeacherCache(int(cfg.teacher_cache_gib * 2**30)) \
        if cfg.teacher_cache_gib > 0 else None
    heldout = None
    if heldout_examples:
        # Every arm is measured the same way, whatever it trains on: KL(teacher || student) at
        # the training temperature and the solution cross-entropy, so curves of a KD arm and an
        # SFT arm can be overlaid.  The online teacher is the same model with the adapter off.
        held_teacher = "offline" if cfg.teacher == "offline" else "online"
        heldout = HeldOut(examples=heldout_examples,
                          collator=DistillCollator(pad_id, teacher=held_teacher, store=store),
                          terms=resolve_loss_terms("kl=1,ce=1"), temperature=cfg.temperature,
                          teacher=held_teacher,
                          logit_chunk=cfg.logit_chunk, batch_size=cfg.batch_size,
                          every=cfg.eval_steps, path=heldout_path,
                          teacher_cache=teacher_cache)
    trainer = trainer_class()(
        model=model, args=args, train_dataset=AlignedDataset(examples),
        data_collator=DistillCollator(pad_id, teacher=cfg.teacher, store=store),
        callbacks=[*stage_callbacks(metrics_path, report_events, heldout), *tracker_callbacks,
                   *callbacks],
        loss_terms=terms, temperature=cfg.temperature, teacher=cfg.teacher,
        logit_chunk=cfg.logit_chunk, teacher_cache=teacher_cache,
    )

    trainer.remove_callback(PrinterCallback)  # it prints every log dict; we have metrics.jsonl
    last = last_complete_checkpoint(checkpoints)
    if last:
        step = int(Path(last).name.split("-")[-1])
        _keep_metrics_until(metrics_path, step)
        _keep_metrics_until(heldout_path, step)
        if heldout is not None:
            heldout.measured.update(r["step"] for r in read_metrics(heldout_path))
        report_events.log(f"resuming from {last}")
    else:
        metrics_path.unlink(missing_ok=True)
        heldout_path.unlink(missing_ok=True)
        shutil.rmtree(out / "tensorboard", ignore_errors=True)  # a start's curves, not two
        if heldout is not None:  # the starting point: the adapter is zero, the model the base
            heldout.measure(model, 0, trainer.is_world_process_zero())
    if stage is not None:
        stage.start_work()
    result = trainer.train(resume_from_checkpoint=last)

    # Outputs: adapter (safetensors, no pickle), curves, manifest.
    if trainer.is_world_process_zero():
        from accelerate.utils import extract_model_from_parallel

        from ssb.export import canonicalize_adapter_config

        extract_model_from_parallel(trainer.model).save_pretrained(
            str(adapter_dir), safe_serialization=True)
        canonicalize_adapter_config(adapter_dir)  # the same training, the same bytes
        tokenizer.save_pretrained(str(adapter_dir))
        rows = read_metrics(metrics_path)
        held = read_metrics(heldout_path)
        summary = {
            "out": str(out), "adapter": str(adapter_dir), "steps": trainer.state.global_step,
            "resumed_from": last, "train_loss": result.training_loss,
            "first_loss": rows[0]["loss"] if rows else None,
            "last_loss": rows[-1]["loss"] if rows else None,
            "loss_terms": describe_terms(terms), "teacher": cfg.teacher,
            "device": str(trainer.args.device), "dtype": str(torch_dtype).removeprefix("torch."),
            "processes": trainer.args.world_size,
            "alignment": report.to_dict(), "vocab_size": int(vocab_size),
            "heldout_first": held[0] if held else None,
            "heldout_last": held[-1] if held else None,
            "teacher_cache": teacher_cache.summary() if teacher_cache is not None else None,
        }
        from ssb.modelcard import write_model_card

        write_model_card(adapter_dir, base_model=cfg.model, config=cfg.manifest(),
                         summary=summary, curated_file=curated_file, records=records)
        stage.finish(summary=summary)
        return DistillResult(out, summary)
    return DistillResult(out, {"out": str(out)})


def _check_one_template(records: Sequence[Any], path: Path) -> None:
    """Records curated with different prompt templates teach different teacher views; a mixed
    training set is almost always two runs concatenated by mistake."""
    templates = sorted({r.template for r in records})
    if len(templates) > 1:
        raise SsbError(f"{path}: records from {len(templates)} prompt templates mixed "
                       f"({', '.join(templates)}); curate them separately or pick one")
