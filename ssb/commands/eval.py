"""``ssb eval``: benchmark accuracy with confidence intervals; ``ssb eval compare``: paired tests."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ssb.commands._common import (backend_opt_option, config_option, emit_json,
                                  parse_backend_options)


def register(app: typer.Typer) -> None:
    eval_app = typer.Typer(
        invoke_without_command=True, no_args_is_help=False, add_completion=False,
    )

    @eval_app.callback()
    def evaluate(
        ctx: typer.Context,
        dataset: Optional[str] = typer.Option(
            None, "--dataset", "-d", help="Dataset name (gsm8k, math500, aime24, amc23, ...)."),
        source: Optional[str] = typer.Option(
            None, "--source", help="Local jsonl/json/parquet file or folder, or a hub id "
            "(default: the dataset's own)."),
        split: str = typer.Option("test", "--split", help="Dataset split."),
        backend: Optional[str] = typer.Option(
            None, "--backend", "-b", help="transformers, llama.cpp, openai, vllm, ..."),
        model: Optional[str] = typer.Option(
            None, "--model", "-m", help="Model: .gguf file, HF directory, hub id, or 'default'."),
        adapter: Optional[str] = typer.Option(
            None, "--adapter", help="LoRA adapter: a peft directory (exported to GGUF "
            "automatically for llama.cpp) or a GGUF LoRA file."),
        limit: Optional[int] = typer.Option(None, "--limit", help="First N problems only."),
        samples: int = typer.Option(1, "--samples", "-n",
                                    help="Samples per problem (n > 1: avg@n, maj@n, pass@k)."),
        temperature: Optional[float] = typer.Option(
            None, "--temperature", "-t",
            help="Sampling temperature (default: 0, greedy, with 1 sample; 0.6 with --samples)."),
        top_p: Optional[float] = typer.Option(
            None, "--top-p", help="Nucleus sampling (default: 1.0 greedy; 0.95 sampled)."),
        max_tokens: int = typer.Option(2048, "--max-tokens",
                                       help="Maximum new tokens per response."),
        seed: int = typer.Option(0, "--seed", help="Sampling seed."),
        template: Optional[str] = typer.Option(
            None, "--template", help="Prompt template name (default: the domain's)."),
        batch_size: int = typer.Option(8, "--batch-size",
                                       help="Problems per backend call (and per journal flush)."),
        workers: int = typer.Option(0, "--workers", "-w",
                                    help="Verification helper processes (0: in-process)."),
        backend_opt: List[str] = backend_opt_option(),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory."),
        force: bool = typer.Option(False, "--force",
                                   help="Resume even though the config changed."),
        json_out: bool = typer.Option(False, "--json", help="Print summary.json to stdout."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        config: Optional[Path] = config_option(),
    ) -> None:
        """Evaluate a model on a benchmark: pass@1 with a 95% CI (greedy by default).

        Writes DIR/results.jsonl (every response, its extracted answer and verdict) and
        DIR/summary.json. Rerunning the same command resumes an interrupted run.

        Examples:\n
          ssb eval -d gsm8k --source ../shared/data/gsm8k -b llama.cpp -m default --out runs/base\n
          ssb eval -d gsm8k -b llama.cpp -m default --adapter runs/student/adapter --out runs/ssb\n
          ssb eval compare runs/base runs/ssb
        """
        if ctx.invoked_subcommand is not None:
            return
        from ssb.errors import SsbError

        missing = [flag for flag, value in (("--dataset", dataset), ("--backend", backend),
                                            ("--model", model), ("--out", out)) if not value]
        if missing:
            raise SsbError(f"ssb eval needs {', '.join(missing)} (or a subcommand: compare); "
                           "see `ssb eval --help`")
        from rich.console import Console

        from ssb.evaluate import EvalConfig, run_eval, summary_table

        cfg = EvalConfig(
            dataset=dataset, backend=backend, model=model, out=out, source=source, split=split,
            adapter=adapter, limit=limit, samples=samples, temperature=temperature,
            top_p=top_p, max_tokens=max_tokens, seed=seed, template=template,
            batch_size=batch_size, workers=workers,
            backend_options=parse_backend_options(backend_opt), force=force,
            progress=not no_progress,
        )
        summary = run_eval(cfg)
        if json_out:
            emit_json(summary)
        else:
            Console().print(summary_table(summary))
            typer.echo(f"results: {out / 'results.jsonl'}  summary: {out / 'summary.json'}")

    @eval_app.command("compare")
    def compare(
        runs: List[Path] = typer.Argument(..., help="Two or more finished eval run directories; "
                                          "the first is the baseline."),
        alpha: float = typer.Option(0.05, "--alpha", help="Significance level."),
        resamples: int = typer.Option(10_000, "--resamples", help="Bootstrap resamples."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
        json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Side-by-side accuracy over shared problems, with paired significance tests.

        Each run is compared with the first: the mean per-problem difference, its paired
        bootstrap 95% CI, and the exact McNemar p-value (one sample per problem). The verdict
        says in words when a difference is not significant.
        """
        from rich.console import Console

        from ssb.errors import SsbError
        from ssb.evaluate import compare_runs, compare_table

        if not 0 < alpha < 1:
            raise SsbError(f"--alpha must be in (0, 1), got {alpha}")
        if resamples < 100:
            raise SsbError(f"--resamples must be >= 100, got {resamples}")
        report = compare_runs(runs, alpha=alpha, resamples=resamples, seed=seed)
        if json_out:
            emit_json(report)
            return
        console = Console()
        console.print(compare_table(report))
        for note in report["notes"]:
            console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
        for c in report["comparisons"]:
            # soft_wrap: the verdict is a sentence to read and grep, not to break mid-phrase.
            console.print(c["verdict"], highlight=False, markup=False, soft_wrap=True)

    app.add_typer(eval_app, name="eval")
