"""``ssb distill``: train a LoRA student on the bare question to match the hinted teacher.

The flags are :class:`ssb.stages.distill.trainer.DistillConfig`'s fields; the stage is
:func:`ssb.stages.distill.trainer.distill`.  Training curves (``training.png``) are drawn here.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ssb.commands._common import emit_json, render_events, stage_command
from ssb.stages.distill.trainer import DistillConfig

DOC = """Distill the teacher's solution-token distributions into a LoRA adapter.

Examples:\n
  ssb distill --curated runs/curate --model default --out runs/distill --preset smoke\n
  ssb distill --curated runs/curate --model Qwen/Qwen2.5-3B-Instruct --out runs/d --preset paper\n
  ssb teacher-logits --curated runs/curate --model M --top-k 64 --temperature 2 --out store\n
  ssb distill --curated runs/curate --model M --out runs/d --teacher offline --teacher-store store\n
  accelerate launch -m ssb distill ...   (multi-GPU / multi-process through the Trainer)
"""


def register(app: typer.Typer) -> None:
    def handler(config: DistillConfig, progress: bool, as_json: bool) -> None:
        from ssb.commands.charts import plot_training
        from ssb.stages.distill.trainer import _is_main_process, distill

        with render_events(progress) as on_event:
            result = distill(config, on_event=on_event)
        if not _is_main_process():
            return
        out = Path(config.out)
        if (out / "metrics.jsonl").exists():
            plot_training(out / "metrics.jsonl", out / "training.png", out / "heldout.jsonl")
        summary = result.summary
        if as_json:
            emit_json(summary)
        else:
            typer.echo(f"adapter: {result.adapter}  steps {summary.get('steps')}  loss "
                       f"{summary.get('first_loss')} -> {summary.get('last_loss')}", err=True)

    stage_command(app, "distill", DistillConfig, handler, doc=DOC, extra=[
        ("progress", bool, typer.Option(True, "--progress/--no-progress",
                                        help="Show progress on stderr.")),
        ("as_json", bool, typer.Option(False, "--json", help="Print the summary as JSON."))])
