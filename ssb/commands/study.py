"""``ssb study``: arms (base, ssb, sft, ...) on one curated set, one paired evaluation.

The flags are :class:`ssb.stages.study.StudyConfig`'s fields; arms come from the config file's
``[[arms]]`` tables, stage options from its ``[curate]``, ``[distill]`` and ``[evaluate]``
tables.  The charts (held-out curves, accuracy per arm) are drawn here from ``charts.json``.
"""

from __future__ import annotations

import typer

from ssb.commands._common import render_events, stage_command
from ssb.stages.study import StudyConfig

DOC = """Curate once, train every arm on the same records, evaluate base and arms on the same
problems with paired significance.  Writes DIR/report.md, DIR/study.json and DIR/plots/.

Rerun the same command to resume a study killed at any point.

Examples:\n
  ssb study --config studies/arithmetic.toml --out runs/study\n
  ssb study --domain arithmetic --out runs/s --limit 40 --eval arithmetic --eval-limit 100 --curate max_tokens=384
"""


def register(app: typer.Typer) -> None:
    def handler(config: StudyConfig, progress: bool) -> None:
        from ssb.commands.charts import render_charts
        from ssb.stages.study import study

        with render_events(progress) as show:
            def on_event(event) -> None:
                show(event)
                if event.data.get("report"):  # an interim report: its charts too
                    render_charts(config.out)

            result = study(config, on_event=on_event)
        render_charts(result.out)
        typer.echo(result.report.read_text(encoding="utf-8"))

    stage_command(app, "study", StudyConfig, handler, doc=DOC, nested=StudyConfig.NESTED,
                  extra=[("progress", bool, typer.Option(True, "--progress/--no-progress",
                                                         help="Show progress on stderr."))])
