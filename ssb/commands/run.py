"""``ssb run``: curate -> distill -> eval (base and student) -> report.md, in rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ssb.commands._common import backend_opt_option, config_option


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        ctx: typer.Context,
        config: Optional[Path] = config_option(),
        out: Optional[Path] = typer.Option(None, "--out", help="Output tree (curate/, distill/, eval/, report.md)."),
        preset: Optional[str] = typer.Option(None, help="demo (offline CPU default) or paper (GPU recipe)."),
        rounds: Optional[int] = typer.Option(None, help="Iterative bootstrapping rounds (default 1)."),
        domain: Optional[str] = typer.Option(None, help="Domain (verifier + prompts), e.g. gsm8k."),
        dataset: Optional[str] = typer.Option(None, help="Training dataset (default: the domain's)."),
        source: Optional[str] = typer.Option(None, help="Local path or hub id of the training set."),
        split: Optional[str] = typer.Option(None, help="Training split (default train)."),
        limit: Optional[int] = typer.Option(None, help="Problems to curate."),
        backend: Optional[str] = typer.Option(None, help="Generation backend for curate and eval."),
        model: Optional[str] = typer.Option(None, help="Base model: hub id, HF dir, .gguf, or 'default'."),
        backend_opt: list[str] = backend_opt_option(),
        rollouts: Optional[int] = typer.Option(None, help="Rollouts per problem (K)."),
        seed: Optional[int] = typer.Option(None, help="Seed for every stage."),
        eval: list[str] = typer.Option([], "--eval", help="Eval dataset NAME or NAME=SOURCE (repeatable)."),
        eval_split: Optional[str] = typer.Option(None, help="Eval split (default test)."),
        eval_limit: Optional[int] = typer.Option(None, help="Problems per eval dataset."),
        eval_max_tokens: Optional[int] = typer.Option(None, help="Max new tokens in eval."),
        eval_backend: Optional[str] = typer.Option(None, help="Eval backend (default: --backend)."),
        distill_model: Optional[str] = typer.Option(None, help="Model for distill (default: --model)."),
        curate_args: Optional[str] = typer.Option(None, help="Extra `ssb curate` flags, quoted."),
        distill_args: Optional[str] = typer.Option(None, help="Extra `ssb distill` flags, quoted."),
        eval_args: Optional[str] = typer.Option(None, help="Extra `ssb eval` flags, quoted."),
        force: bool = typer.Option(False, help="Rerun every stage even if complete."),
    ) -> None:
        """Run the whole pipeline with one output tree and a report.

        Each completed stage is skipped on rerun, so a crashed run resumes by rerunning the same
        command.

        Examples:\n
          ssb run --preset demo --out runs/demo\n
          ssb run --config pipeline.toml\n
          ssb run --preset paper --out runs/paper --model Qwen/Qwen2.5-3B-Instruct
        """
        import shlex

        from ssb.run import resolve_config, run_pipeline

        flags = dict(ctx.params)
        for key in ("config", "preset"):
            flags.pop(key)
        for key in ("curate_args", "distill_args", "eval_args"):
            value = flags[key]
            flags[key] = shlex.split(value) if isinstance(value, str) else value
        if flags["out"] is not None:
            flags["out"] = str(flags["out"])
        if not force:
            flags.pop("force")
        cfg = resolve_config(flags, preset)
        report = run_pipeline(cfg, log=lambda msg: typer.echo(msg, err=True))
        typer.echo(report.read_text(encoding="utf-8"))
