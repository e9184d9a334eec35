"""``ssb teacher-logits``: the offline teacher signal, a top-k store for ``--teacher offline``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ssb.commands._common import config_option, emit_json, params_of, progress_bar


def register(app: typer.Typer) -> None:
    @app.command("teacher-logits")
    def teacher_logits(
        ctx: typer.Context,
        curated: Path = typer.Option(..., "--curated", help="Curate output DIR (curated.jsonl) or the jsonl file."),
        model: str = typer.Option(..., "--model", help="Teacher = base model: hub id, HF dir, .gguf, or 'default'."),
        out: Path = typer.Option(..., "--out", help="Store DIR (index.json + shard-*.safetensors)."),
        top_k: int = typer.Option(64, "--top-k", help="Teacher tokens kept per solution token (6k+8 bytes/token)."),
        temperature: float = typer.Option(2.0, "--temperature", help="Temperature of the stored log-probs (= distill --temperature)."),
        max_length: int = typer.Option(2048, "--max-length", help="Same meaning as in `ssb distill`."),
        overlong: str = typer.Option("truncate", "--overlong", help="truncate or drop (as in `ssb distill`)."),
        batch_size: int = typer.Option(4, "--batch-size", help="Teacher views per forward pass."),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16."),
        force: bool = typer.Option(False, "--force", help="Rebuild a store that was made with other settings."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        config: Optional[Path] = config_option(),
    ) -> None:
        """Store the frozen model's top-k log-probs at every solution token (resumable).

        Examples:\n
          ssb teacher-logits --curated runs/curate --model default --top-k 64 --temperature 2 --out runs/store\n
          ssb distill --curated runs/curate --model default --out runs/d --teacher offline --teacher-store runs/store
        """
        from ssb.config import finish_manifest, start_manifest
        from ssb.distill.alignment import curated_path, load_curated
        from ssb.teacher import build_store

        total = len(load_curated(curated))
        cfg = params_of(ctx)
        cfg.pop("config", None)
        manifest = start_manifest(out, "teacher-logits", cfg, inputs=[curated_path(curated)])
        with progress_bar("teacher logits", total, enabled=progress) as advance:
            summary = build_store(curated, model, out, top_k=top_k, temperature=temperature,
                                  max_length=max_length, overlong=overlong,
                                  batch_size=batch_size, dtype=dtype, force=force,
                                  progress=advance)
        finish_manifest(out, manifest, summary=summary)
        emit_json(summary)
