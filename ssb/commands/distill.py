"""``ssb distill``: train a LoRA student on the bare question to match the hinted teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ssb.commands._common import config_option, emit_json


def register(app: typer.Typer) -> None:
    @app.command("distill")
    def distill(
        ctx: typer.Context,
        curated: Path = typer.Option(..., "--curated", help="Curate output DIR (curated.jsonl) or the jsonl file."),
        model: str = typer.Option(..., "--model", help="Base model: hub id, HF dir, .gguf file, or 'default'."),
        out: Path = typer.Option(..., "--out", help="Output DIR: adapter/, metrics.jsonl, training.png, manifest.json."),
        lora_r: int = typer.Option(32, "--lora-r", help="LoRA rank."),
        lora_alpha: int = typer.Option(32, "--lora-alpha", help="LoRA alpha."),
        lora_dropout: float = typer.Option(0.05, "--lora-dropout", help="LoRA dropout."),
        target_modules: str = typer.Option("q,k,v,o,gate,up,down", "--target-modules",
                                           help="Comma-separated modules (q,k,v,o,gate,up,down or full names)."),
        epochs: float = typer.Option(3.0, "--epochs", help="Training epochs."),
        max_steps: int = typer.Option(-1, "--max-steps", help="Stop after this many optimizer steps (-1: use --epochs)."),
        batch_size: int = typer.Option(4, "--batch-size", help="Examples per device per micro-batch."),
        grad_accum: int = typer.Option(1, "--grad-accum", help="Gradient accumulation steps."),
        lr: float = typer.Option(2e-4, "--lr", help="Peak learning rate."),
        lr_scheduler: str = typer.Option("linear", "--lr-scheduler", help="transformers scheduler name."),
        warmup_steps: float = typer.Option(0.0, "--warmup-steps", help="Warmup steps (a value < 1 is a ratio)."),
        temperature: float = typer.Option(2.0, "--temperature", help="KD temperature T (KL terms x T^2)."),
        loss: str = typer.Option("kl=1,ce=0", "--loss", help="Weighted losses by registry name, e.g. kl=1,ce=0.5 or jsd=1,jsd.beta=0.3."),
        teacher: str = typer.Option("online", "--teacher", help="online (base model, adapter off), offline (top-k store) or none (ce only)."),
        teacher_store: Optional[Path] = typer.Option(None, "--teacher-store", help="Store DIR from `ssb teacher-logits` (with --teacher offline)."),
        max_length: int = typer.Option(2048, "--max-length", help="Max tokens of the longer view; see --overlong."),
        overlong: str = typer.Option("truncate", "--overlong", help="Too long: truncate the solution (same cut in both views) or drop the record."),
        seed: int = typer.Option(0, "--seed", help="Seed (LoRA init, data order, dropout)."),
        dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16."),
        gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in backward (less memory)."),
        logit_chunk: int = typer.Option(256, "--logit-chunk", help="Solution tokens per LM-head/loss chunk (memory knob)."),
        save_steps: int = typer.Option(50, "--save-steps", help="Checkpoint every N steps (resume point)."),
        save_total_limit: int = typer.Option(2, "--save-total-limit", help="Checkpoints kept."),
        logging_steps: int = typer.Option(1, "--logging-steps", help="Log metrics every N steps."),
        report_to: str = typer.Option("none", "--report-to", help="none, tensorboard, wandb (comma-separated)."),
        preset: Optional[str] = typer.Option(None, "--preset", help="paper (r=32 a=32 q..down, lr 2e-4, batch 4, 3 epochs, T=2, kl=1) or smoke (quick CPU run); explicit flags win."),
        force: bool = typer.Option(False, "--force", help="Start over in OUT even if it holds a run with another config."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Rich progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
        config: Optional[Path] = config_option(),
    ) -> None:
        """Distill the teacher's solution-token distributions into a LoRA adapter.

        Examples:\n
          ssb distill --curated runs/curate --model default --out runs/distill --preset smoke\n
          ssb distill --curated runs/curate --model Qwen/Qwen2.5-3B-Instruct --out runs/d --preset paper\n
          ssb teacher-logits --curated runs/curate --model M --top-k 64 --temperature 2 --out store\n
          ssb distill --curated runs/curate --model M --out runs/d --teacher offline --teacher-store store\n
          accelerate launch -m ssb distill ...   (multi-GPU through the Trainer)
        """
        from ssb.distill.trainer import PRESETS, DistillConfig, run_distill
        from ssb.errors import SsbError

        values = dict(ctx.params)
        if preset:
            if preset not in PRESETS:
                raise SsbError(f"--preset: unknown {preset!r}; known: {', '.join(PRESETS)}")
            for key, value in PRESETS[preset].items():
                source = ctx.get_parameter_source(key)
                # by name: typer may carry its own copy of click's ParameterSource enum
                if source is None or source.name == "DEFAULT":
                    values[key] = value
        for key in ("curated", "out", "teacher_store"):
            if values.get(key) is not None:
                values[key] = str(values[key])
        values.pop("config", None)
        values.pop("as_json", None)
        cfg = DistillConfig(**values)
        summary = run_distill(cfg)
        if as_json:
            emit_json(summary)
        else:
            from rich.console import Console

            Console(stderr=True).print(
                f"[green]adapter:[/] {summary.get('adapter', Path(cfg.out) / 'adapter')}  "
                f"steps {summary.get('steps')}  loss {summary.get('first_loss')} -> "
                f"{summary.get('last_loss')}", highlight=False)
