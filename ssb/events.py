"""Progress events: how a stage tells its caller what it is doing, without printing anything.

A stage takes an optional ``on_event`` callback and calls it with :class:`Event` objects; the
CLI (``ssb.commands``) turns them into progress bars or, without a terminal, into a one-line
status every few seconds.  A notebook can pass ``print`` or collect them in a list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

EventKind = Literal["start", "advance", "info", "log", "end"]


@dataclass(frozen=True)
class Event:
    """One thing that happened in a stage.

    * ``start``: a unit of work begins (``total`` items, may be ``None``; ``done`` already done);
    * ``advance``: ``advance`` more items finished (``info``: a short live summary);
    * ``info``: only the live summary changed;
    * ``log``: a message for the user (``message``), e.g. a warning or a resumed checkpoint;
    * ``end``: the unit of work finished.
    """

    stage: str
    kind: EventKind
    task: str = ""  # e.g. "curate", "eval gsm8k", "distill"
    total: int | None = None
    done: int = 0
    advance: int = 0
    info: str = ""
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # e.g. a logged training step


EventCallback = Callable[[Event], None]

log = logging.getLogger("ssb")


class Reporter:
    """What a stage holds: ``reporter.start(...)``, ``.advance(n)``, ``.log(msg)``, ``.end()``.

    With no callback, ``log`` messages go to the ``ssb`` logger and everything else is dropped.
    """

    def __init__(self, stage: str, on_event: EventCallback | None = None):
        self.stage = stage
        self.on_event = on_event
        self.task = stage

    def emit(self, kind: EventKind, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(Event(self.stage, kind, task=fields.pop("task", self.task), **fields))
        elif kind == "log":
            log.warning("%s: %s", self.stage, fields.get("message", ""))

    def start(self, task: str, total: int | None, done: int = 0, info: str = "") -> None:
        self.task = task
        self.emit("start", total=total, done=done, info=info)

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.emit("advance", advance=n, info=info or "")

    def info(self, info: str) -> None:
        self.emit("info", info=info)

    def log(self, message: str, **data: Any) -> None:
        self.emit("log", message=message, data=data)

    def end(self, info: str = "") -> None:
        self.emit("end", info=info)


__all__ = ["Event", "EventCallback", "EventKind", "Reporter"]
