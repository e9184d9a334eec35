"""``ssb curate``: problems -> K rollouts -> verified pairs -> hinted robust solutions.

The stage lives in :mod:`ssb.curate` (imported inside the command so ``ssb --help`` stays fast).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ssb.commands._common import backend_opt_option, config_option, emit_json

# Flags a preset may fill in; an explicit flag (or config file key) always wins.
_DEFAULTS: dict[str, Any] = {"rollouts": 4, "temperature": 0.8, "top_k": 50, "top_p": 1.0,
                             "teacher_temperature": 0.4}


def register(app: typer.Typer) -> None:
    @app.command("curate")
    def curate(
        ctx: typer.Context,
        domain: str = typer.Option(..., "--domain", help="Verifier + prompt domain (gsm8k, math, arithmetic, ...)."),
        backend: str = typer.Option(..., "--backend", help="Generation backend (see `ssb plugins`)."),
        model: str = typer.Option(..., "--model", help="Model: hub id, HF directory, .gguf file or 'default'."),
        out: Path = typer.Option(..., "--out", help="Output directory (rerun the same command to resume)."),
        dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset name (default: the domain's name)."),
        source: Optional[str] = typer.Option(None, "--source", help="Local jsonl/json/parquet path or hub id (default: the dataset's)."),
        split: str = typer.Option("train", "--split"),
        limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N problems."),
        rollouts: Optional[int] = typer.Option(None, "--rollouts", help="Rollouts per problem (K) (default: 4)."),
        seed: int = typer.Option(0, "--seed", help="Seeds sampling and the selection tie-breaks."),
        preset: Optional[str] = typer.Option(None, "--preset", help="Sampling preset: 'paper' (K=4, T=0.8, top-k 50, teacher T=0.4)."),
        temperature: Optional[float] = typer.Option(None, "--temperature", help="Rollout temperature (default: 0.8)."),
        top_k: Optional[int] = typer.Option(None, "--top-k", help="Top-k for sampling, 0 = off (default: 50)."),
        top_p: Optional[float] = typer.Option(None, "--top-p", help="Top-p for sampling (default: 1.0)."),
        teacher_temperature: Optional[float] = typer.Option(None, "--teacher-temperature", help="Temperature of the robust solution (default: 0.4)."),
        max_tokens: int = typer.Option(1024, "--max-tokens", help="Max new tokens per rollout / solution."),
        teacher_max_tokens: Optional[int] = typer.Option(None, "--teacher-max-tokens", help="Max new tokens of the robust solution (default: --max-tokens); a truncated solution is never kept."),
        template: Optional[str] = typer.Option(None, "--template", help="Prompt template name (default: the domain's first)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Problems per backend call."),
        max_errors: int = typer.Option(10, "--max-errors", help="Stop after more than this many failed problems in one run."),
        workers: int = typer.Option(0, "--workers", help="Verification worker processes (0: in-process)."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count) malformed dataset rows instead of failing."),
        backend_opt: list[str] = backend_opt_option(),
        adapter: Optional[str] = typer.Option(None, "--adapter", help="LoRA adapter directory for the backend."),
        force: bool = typer.Option(False, "--force", help="Resume even though the config changed."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a live progress bar on stderr."),
        config: Optional[Path] = config_option(),
    ) -> None:
        """Curate SSB training data: K rollouts, verify, pick a right and a wrong one, and keep
        the model's hinted robust solution when it verifies.  Writes DIR/curated.jsonl,
        DIR/stats.json, DIR/manifest.json (and DIR/journal.jsonl, which makes reruns resume).

        Examples:\n
          ssb curate --domain arithmetic --backend llama.cpp --model default --limit 16 --out runs/c\n
          ssb curate --domain gsm8k --source ../shared/data/gsm8k/train.jsonl --backend llama.cpp --model default --limit 32 --out runs/c\n
          ssb curate --domain gsm8k --backend vllm --model Qwen/Qwen2.5-3B-Instruct --preset paper --limit 256 --out runs/paper/curate
        """
        from ssb.commands._common import parse_backend_options
        from ssb.curate import PRESETS, CurateConfig, run_curate
        from ssb.errors import SsbError

        given = {"rollouts": rollouts, "temperature": temperature, "top_k": top_k,
                 "top_p": top_p, "teacher_temperature": teacher_temperature}
        if preset is not None and preset not in PRESETS:
            raise SsbError(f"unknown --preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
        base = PRESETS[preset] if preset else _DEFAULTS
        sampling = {k: (v if v is not None else base[k]) for k, v in given.items()}
        cfg = CurateConfig(
            domain=domain, backend=backend, model=model, out=out, dataset=dataset,
            source=source, split=split, limit=limit, seed=seed,
            max_tokens=max_tokens, teacher_max_tokens=teacher_max_tokens, template=template, batch_size=batch_size,
            max_errors=max_errors, workers=workers, skip_bad=skip_bad, adapter=adapter,
            backend_options=parse_backend_options(backend_opt), force=force,
            progress=progress, **sampling,
        )
        stats = run_curate(cfg)
        emit_json(stats)
