"""Run one stage in a child process, fed a validated config: ``python -m ssb.stages.child STAGE``.

:func:`ssb.run` and :func:`ssb.study` run every stage in its own process so that memory goes
back between stages (llama.cpp, then torch).  The parent validates the stage's config before the
first stage starts and passes it as JSON in the ``SSB_STAGE_CONFIG`` environment variable
(inherited by every process of a distributed launcher such as ``accelerate launch``, and never
written to a file: it may hold a secret such as an API key).  The child reports progress as
:class:`ssb.events.Event` JSON lines on stdout, each prefixed with :data:`EVENT_PREFIX`; anything
else it prints passes through.  Exit status: 0 done, 2 a user-facing error (one line on stderr),
anything else a crash.

The child dies with its parent (:func:`ssb.processes.die_with_parent`): a SIGKILLed ``ssb run``
leaves no stage computing on, holding the output lock against the rerun.  Should the parent
vanish anyway (where the kernel gives no parent-death signal), the next event finds its pipe
broken and the child exits at once, quietly, with :data:`EXIT_PARENT_GONE`: a broken pipe is
not a failure of the stage's work, and must never be recorded as one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Callable

EVENT_PREFIX = "\x1essb-event "
CONFIG_ENV = "SSB_STAGE_CONFIG"
EXIT_PARENT_GONE = 141  # 128 + SIGPIPE: the parent reading the events is gone


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
    try:
        sys.stdout.write(EVENT_PREFIX + json.dumps(data, default=str) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Raised inside the stage (a backend's progress callback, say), the error would be
        # caught there and journaled as the failure of a problem: leave before it can be.
        os._exit(EXIT_PARENT_GONE)


def main(argv: list[str] | None = None) -> int:
    from ssb.processes import die_with_parent

    die_with_parent(watch=True)  # first: before the imports and the stage's work
    from ssb.errors import SsbError
    from ssb.secrets import learn, mask_streams, redact_text

    mask_streams()  # as in ssb.cli.main: every line printed goes through the secret mask
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
        data = json.loads(raw)
        learn(data)  # its secrets (a URL's password too) are masked from the first line on
        config = cls.from_mapping(data, where=f"${CONFIG_ENV}")
        fn(config, on_event=_emit)
    except SsbError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
