"""Run one stage in a child process, fed a validated config: ``python -m ssb.stages.child STAGE``.

:func:`ssb.run` and :func:`ssb.study` run every stage in its own process so that memory goes
back between stages (llama.cpp, then torch).  The parent validates the stage's config before the
first stage starts and passes it as JSON in the ``SSB_STAGE_CONFIG`` environment variable
(inherited by every process of a distributed launcher such as ``accelerate launch``, and never
written to a file: it may hold a secret such as an API key).  The child reports progress as
:class:`ssb.events.Event` JSON lines on stdout, each prefixed with :data:`EVENT_PREFIX`; anything
else it prints passes through.  Exit status: 0 done, 2 a user-facing error (one line on stderr),
anything else a crash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Callable

EVENT_PREFIX = "\x1essb-event "
CONFIG_ENV = "SSB_STAGE_CONFIG"


def stage_functions() -> dict[str, tuple[type, Callable[..., Any]]]:
    """Stage name -> (config class, stage function)."""
    from ssb.stages.distill.trainer import DistillConfig, distill
    from ssb.stages.curate import CurateConfig, curate
    from ssb.stages.evaluate import EvalConfig, evaluate

    return {"curate": (CurateConfig, curate), "distill": (DistillConfig, distill),
            "eval": (EvalConfig, evaluate)}


def _emit(event: Any) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # one event stream per distributed job
        return
    data = dataclasses.asdict(event)
    sys.stdout.write(EVENT_PREFIX + json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    from ssb.errors import SsbError
    from ssb.secrets import redact_text

    argv = sys.argv[1:] if argv is None else argv
    stages = stage_functions()
    if len(argv) != 1 or argv[0] not in stages:
        print(f"usage: python -m ssb.stages.child {{{','.join(stages)}}} "
              f"(config JSON in ${CONFIG_ENV})", file=sys.stderr)
        return 2
    cls, fn = stages[argv[0]]
    try:
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            raise SsbError(f"${CONFIG_ENV} is not set")
        config = cls.from_mapping(json.loads(raw), where=f"${CONFIG_ENV}")
        fn(config, on_event=_emit)
    except SsbError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
