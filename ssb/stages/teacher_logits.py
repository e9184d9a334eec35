"""``ssb teacher-logits``: the offline teacher signal, a top-k store for ``--teacher offline``.

The config and the stage live here, apart from the store itself
(:mod:`ssb.stages.distill.teacher`), so that building the CLI does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ssb.events import EventCallback, Reporter
from ssb.option_groups import ACCEPT_CHANGED_CONFIG, FORCE, MODEL, OUT, RESTART
from ssb.options import StageConfig, option


@dataclass
class TeacherLogitsConfig(StageConfig):
    """Everything ``ssb teacher-logits`` takes."""

    COMMAND: ClassVar[str] = "teacher-logits"

    curated: str = option(help="Curate output DIR (curated.jsonl) or the jsonl file.")
    model: str = MODEL(note="the teacher: the base model")
    out: str = OUT(note="the store, index.json + shard-*.safetensors")
    top_k: int = option(64, ge=1, help="Teacher tokens kept per solution token "
                        "(6k+8 bytes/token).")
    temperature: float = option(2.0, gt=0, help="Temperature of the stored log-probs "
                                "(= distill --temperature).")
    max_length: int | None = option(2048, ge=8, help="Same meaning as in `ssb distill`.")
    overlong: str = option("truncate", choices=("truncate", "drop"),
                           help="truncate or drop (as in `ssb distill`).")
    batch_size: int = option(4, ge=1, resume=False, help="Teacher views per forward pass.")
    dtype: str = option("auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="auto, float32, bfloat16, float16.")
    restart: bool = RESTART()
    accept_changed_config: bool = ACCEPT_CHANGED_CONFIG(
        note="a store of other settings cannot be extended: it is rebuilt")
    force: bool = FORCE("accept_changed_config", "rebuild a store made with other settings")


def teacher_logits(config: TeacherLogitsConfig, *,
                   on_event: EventCallback | None = None) -> dict[str, Any]:
    """Build (or finish) the top-k store of ``config`` under the stage skeleton's lock."""
    from ssb.stage import StageOutput
    from ssb.stages.distill.alignment import curated_path, load_curated
    from ssb.stages.distill.teacher import build_store

    config = config.validate()
    report = Reporter("teacher-logits", on_event)
    curated_file = curated_path(config.curated)
    total = len(load_curated(curated_file))
    from ssb.stages.distill.teacher import INDEX

    with StageOutput(config.out, "teacher-logits", config.identity(), config.manifest(),
                     force=config.accept_changed_config, restart=config.restart,
                     outputs=[INDEX, *store_shards(config.out)],
                     inputs=[curated_file]) as stage:
        stage.start_work()
        report.start("teacher logits", total=total)
        summary = build_store(curated_file, config.model, config.out, top_k=config.top_k,
                              temperature=config.temperature, max_length=config.max_length,
                              overlong=config.overlong, batch_size=config.batch_size,
                              dtype=config.dtype, force=config.accept_changed_config,
                              progress=lambda n: report.advance(n))
        report.end()
        stage.finish(summary=summary)
    return summary


def store_shards(out: str) -> list[str]:
    """The shard files of a top-k store in ``out`` (what ``--restart`` deletes, with its index)."""
    from pathlib import Path

    directory = Path(out)
    return sorted(p.name for p in directory.glob("shard-*.safetensors")) \
        if directory.is_dir() else []


__all__ = ["TeacherLogitsConfig", "store_shards", "teacher_logits"]
