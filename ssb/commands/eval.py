"""``ssb eval``: benchmark accuracy with confidence intervals; ``ssb eval compare``: paired tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, List, Optional

import typer

from ssb.commands._common import emit_json, render_events, stage_command
from ssb.option_groups import SEED
from ssb.options import StageConfig, option
from ssb.stages.evaluate import EvalConfig

DOC = """Evaluate a model on a benchmark: pass@1 with a 95% CI (greedy by default).

Writes DIR/results.jsonl (every response, its extracted answer and verdict) and
DIR/summary.json. Rerunning the same command resumes an interrupted run.

Examples:\n
  ssb eval -d gsm8k --source ../shared/data/gsm8k -b llama.cpp -m default --out runs/base\n
  ssb eval -d gsm8k -b llama.cpp -m default --adapter runs/student/adapter --out runs/ssb\n
  ssb eval compare runs/base runs/ssb
"""


COMPARE_DOC = """Side-by-side accuracy over shared problems, with paired significance tests.

Each run is compared with the first: the mean per-problem difference, its paired bootstrap 95% \
CI, and the exact McNemar p-value (one sample per problem). The verdict says in words when a \
difference is not significant.
"""


@dataclass
class CompareConfig(StageConfig):
    """What ``ssb eval compare`` takes besides the run directories: its flags and the keys of
    the ``[compare]`` table of its ``--config`` file."""

    COMMAND: ClassVar[str] = "eval compare"

    alpha: float = option(0.05, gt=0, lt=1, help="Significance level.")
    # The upper bound is ssb.metrics.MAX_RESAMPLES (not imported here: numpy at every start);
    # tests/test_options.py holds the two equal.
    resamples: int = option(10_000, ge=100, le=1_000_000, help="Bootstrap resamples.")
    seed: int = SEED(0, note="of the bootstrap")


def _compare(config: CompareConfig, runs: list[Path], json_out: bool) -> None:
    from rich.console import Console

    from ssb.stages.evaluate import compare_runs

    report = compare_runs(runs, alpha=config.alpha, resamples=config.resamples,
                          seed=config.seed)
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


def register(app: typer.Typer) -> None:
    eval_app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                           add_completion=False)

    def handler(config: EvalConfig, progress: bool, json_out: bool) -> None:
        from rich.console import Console

        from ssb.stages.evaluate import evaluate

        with render_events(progress) as on_event:
            result = evaluate(config, on_event=on_event)
        if json_out:
            emit_json(result.summary)
        else:
            Console().print(summary_table(result.summary))
            typer.echo(f"results: {result.results}  summary: {result.out / 'summary.json'}")

    # `ssb eval` is the stage; `ssb eval compare` a subcommand: the stage command is the group's
    # callback, so it runs only when no subcommand is given.
    holder = typer.Typer()
    stage_command(holder, "eval", EvalConfig, handler, doc=DOC, extra=[
        ("progress", bool, typer.Option(True, "--progress/--no-progress",
                                        help="Show progress on stderr.")),
        ("json_out", bool, typer.Option(False, "--json", help="Print summary.json to stdout."))])
    stage_fn = holder.registered_commands[0].callback

    def evaluate_group(ctx: typer.Context, **kwargs):
        if ctx.invoked_subcommand is not None:
            return
        from ssb.options import ConfigError

        missing = [f for f, k in (("--dataset", "dataset"), ("--backend", "backend"),
                                  ("--model", "model"), ("--out", "out"))
                   if kwargs.get(k) is None]
        if missing and kwargs.get("config") is None:
            raise ConfigError(f"ssb eval needs {', '.join(missing)} (or a subcommand: compare); "
                              "see `ssb eval --help`")
        if isinstance(kwargs.get("adapter"), (list, tuple)):  # repeated --adapter: in order
            kwargs["adapter"] = ",".join(kwargs["adapter"]) or None
        stage_fn(ctx=ctx, **kwargs)

    # --adapter may repeat (a round-r student's adapters, in order): the stage takes them
    # comma-joined, as it takes them from a config file.
    signature = stage_fn.__signature__  # type: ignore[attr-defined]
    signature = signature.replace(parameters=[
        p.replace(annotation=Optional[List[str]]) if p.name == "adapter" else p
        for p in signature.parameters.values()])
    evaluate_group.__signature__ = signature  # type: ignore[attr-defined]
    evaluate_group.__annotations__ = {**stage_fn.__annotations__,
                                      "adapter": Optional[List[str]]}
    evaluate_group.__doc__ = DOC
    eval_app.callback()(evaluate_group)

    compare_holder = typer.Typer()
    stage_command(compare_holder, "compare", CompareConfig, _compare, doc=COMPARE_DOC,
                  section="compare", extra=[
                      ("runs", List[Path], typer.Argument(
                          ..., help="Two or more finished eval run directories; the first is "
                          "the baseline.")),
                      ("json_out", bool, typer.Option(False, "--json",
                                                      help="Print the report as JSON."))])
    eval_app.command("compare")(compare_holder.registered_commands[0].callback)

    app.add_typer(eval_app, name="eval")


# -- tables ---------------------------------------------------------------------------------------

def summary_table(summary: dict[str, Any]):
    """A rich table of one run's summary."""
    from rich.table import Table

    acc = summary["accuracy"]
    title = f"{summary['dataset']} ({summary['split']}): {summary['model']}"
    if summary.get("adapter"):
        title += f" + {summary['adapter']}"
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("problems", str(summary["n"]))
    table.add_row("samples / problem", str(summary["samples_per_problem"]))
    table.add_row("accuracy (pass@1)", f"{100 * acc['mean']:.1f}%")
    table.add_row("95% CI", f"{100 * acc['ci_low']:.1f} - {100 * acc['ci_high']:.1f}% "
                            f"({acc['ci_method']})")
    for k, v in (summary.get("pass@k") or {}).items():
        if k != "1":
            table.add_row(f"pass@{k}", f"{100 * v:.1f}%")
    if "maj@n" in summary:
        n = summary["samples_per_problem"]
        table.add_row(f"avg@{n}", f"{100 * summary['avg@n']:.1f}%")
        table.add_row(f"maj@{n}", f"{100 * summary['maj@n']:.1f}%")
    table.add_row("truncated (hit max tokens)", f"{100 * summary['truncation_rate']:.1f}%")
    table.add_row("no answer extracted", f"{100 * summary['no_answer_rate']:.1f}%")
    table.add_row("mean response tokens", f"{summary['mean_response_tokens']:.1f}")
    s = summary["settings"]
    table.add_row("decoding", f"T={s['temperature']:g} top_p={s['top_p']:g} "
                              f"max_tokens={s['max_tokens']} seed={s['seed']}")
    return table


def compare_table(report: dict[str, Any]):
    """A rich table of :func:`ssb.stages.evaluate.compare_runs`' report."""
    from rich.table import Table

    table = Table(title=f"paired comparison on {report['shared_problems']} shared problems "
                        f"(vs {report['runs'][0]['label']})")
    for col, justify in (("run", "left"), ("model", "left"), ("adapter", "left"),
                         ("accuracy", "right"), ("95% CI", "right"), ("diff (pts)", "right"),
                         ("diff 95% CI", "right"), ("McNemar p", "right"),
                         ("significant", "center")):
        table.add_column(col, justify=justify)
    for i, r in enumerate(report["runs"]):
        c = report["comparisons"][i - 1] if i else None  # comparisons follow runs[1:]
        table.add_row(
            r["label"], str(r.get("model") or ""), str(r.get("adapter") or "-"),
            f"{100 * r['accuracy']:.1f}%", f"{100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f}",
            "(base)" if c is None else f"{100 * c['diff']:+.1f}",
            "" if c is None else f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}",
            "" if c is None or c["mcnemar_p"] is None else f"{c['mcnemar_p']:.3g}",
            "" if c is None else ("yes" if c["significant"] else "NO"),
        )
    return table
