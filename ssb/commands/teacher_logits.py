"""``ssb teacher-logits``: the offline teacher signal, a top-k store for ``--teacher offline``."""

from __future__ import annotations

import typer

from ssb.commands._common import emit_json, render_events, stage_command
from ssb.stages.teacher_logits import TeacherLogitsConfig

DOC = """Store the frozen model's top-k log-probs at every solution token (resumable).

Examples:\n
  ssb teacher-logits --curated runs/curate --model default --top-k 64 --temperature 2 --out runs/store\n
  ssb distill --curated runs/curate --model default --out runs/d --teacher offline --teacher-store runs/store
"""


def register(app: typer.Typer) -> None:
    def handler(config: TeacherLogitsConfig, progress: bool) -> None:
        from ssb.stages.teacher_logits import teacher_logits

        with render_events(progress) as on_event:
            summary = teacher_logits(config, on_event=on_event)
        emit_json(summary)

    stage_command(app, "teacher-logits", TeacherLogitsConfig, handler, doc=DOC, extra=[
        ("progress", bool, typer.Option(True, "--progress/--no-progress",
                                        help="Show progress on stderr."))])
