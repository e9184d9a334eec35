"""``ssb curate``: problems -> K rollouts -> verified pairs -> hinted robust solutions.

The flags are :class:`ssb.stages.curate.CurateConfig`'s fields; the stage is
:func:`ssb.stages.curate.curate`.
"""

from __future__ import annotations

import typer

from ssb.commands._common import emit_json, render_events, stage_command
from ssb.stages.curate import CurateConfig

DOC = """Curate SSB training data: K rollouts, verify, pick a right and a wrong one, and keep
the model's hinted robust solution when it verifies.  Writes DIR/curated.jsonl,
DIR/rejected.jsonl (hinted solutions that did not verify, to read why), DIR/stats.json,
DIR/manifest.json (and DIR/journal.jsonl, which makes reruns resume).

Examples:\n
  ssb curate --domain arithmetic --backend llama.cpp --model default --limit 16 --out runs/c\n
  ssb curate --domain gsm8k --source ../shared/data/gsm8k/train.jsonl --backend llama.cpp --model default --limit 32 --out runs/c\n
  ssb curate --domain gsm8k --backend vllm --model Qwen/Qwen2.5-3B-Instruct --preset paper --limit 256 --out runs/paper/curate
"""


def register(app: typer.Typer) -> None:
    def handler(config: CurateConfig, progress: bool) -> None:
        from ssb.stages.curate import curate

        with render_events(progress) as on_event:
            result = curate(config, on_event=on_event)
        emit_json(result.stats)

    stage_command(app, "curate", CurateConfig, handler, doc=DOC, extra=[
        ("progress", bool, typer.Option(True, "--progress/--no-progress",
                                        help="Show progress on stderr."))])
