"""``ssb run``: curate -> distill -> eval (base and student) -> report.md, in rounds.

The flags are :class:`ssb.stages.run.RunConfig`'s fields; each stage's own options come from
the ``[curate]``, ``[distill]`` and ``[evaluate]`` tables of ``--config`` (or ``--curate
KEY=VALUE`` ...), and every stage's config is validated before the first stage starts.
"""

from __future__ import annotations

import typer

from ssb.commands._common import render_events, stage_command
from ssb.stages.run import RunConfig

DOC = """Run the whole pipeline with one output tree and a report.

Each completed stage is skipped on rerun, so a crashed run resumes by rerunning the same
command.  Stage options go in the config file's [curate], [distill] and [evaluate] tables; a
--curate/--distill/--evaluate KEY=VALUE flag changes that one key of the table.  --restart
reruns every stage from nothing; --accept-changed-config lets each stage go on under a changed
config where that is safe.

Examples:\n
  ssb run --preset demo --out runs/demo\n
  ssb run --config pipeline.toml\n
  ssb run --preset paper --out runs/paper --distill epochs=2\n
  ssb run --config pipeline.toml --launcher "accelerate launch --num_processes 8"
"""


def register(app: typer.Typer) -> None:
    def handler(config: RunConfig, progress: bool) -> None:
        from ssb.commands.charts import render_charts
        from ssb.stages.run import run

        with render_events(progress) as on_event:
            result = run(config, on_event=on_event)
        render_charts(result.out)
        typer.echo(result.report.read_text(encoding="utf-8"))

    stage_command(app, "run", RunConfig, handler, doc=DOC, nested=RunConfig.NESTED, extra=[
        ("progress", bool, typer.Option(True, "--progress/--no-progress",
                                        help="Show progress on stderr."))])
