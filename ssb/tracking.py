"""Experiment trackers for a training run (``--report-to``): which exist, whether one is
installed, and how the Trainer is wired to them.

Each tracker is an optional extra of the core distribution
(``pip install 'softboot[tensorboard]'``).  A tracker that is unknown or not installed is
refused when the config is validated, before any stage starts, in one line that says what to
install; a training run never ends in the tracker's ImportError.  TensorBoard's event files go
to ``OUT/tensorboard/`` (not under ``checkpoints/``, which a restart removes).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ssb.options import ConfigError

# name -> the module transformers imports for it (the extra of the same name installs it)
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
NONE = "none"
TENSORBOARD_DIR = "tensorboard"


def parse_report_to(value: str, flag: str = "--report-to") -> list[str]:
    """``"tensorboard,wandb"`` -> the tracker names; ``"none"`` or empty -> ``[]``.

    Raises :class:`ConfigError` for an unknown name or a tracker that is not installed."""
    names = [n.strip() for n in str(value or "").split(",") if n.strip()]
    if names in ([], [NONE]):
        return []
    known = ", ".join([NONE, *TRACKERS])
    for name in names:
        if name == NONE:
            raise ConfigError(f"{flag} {value}: {NONE!r} cannot be combined with a tracker")
        if name not in TRACKERS:
            raise ConfigError(f"{flag} {name}: unknown tracker (one of: {known})")
    missing = [n for n in dict.fromkeys(names) if importlib.util.find_spec(TRACKERS[n]) is None]
    if missing:
        raise ConfigError(f"{flag} {','.join(missing)}: not installed; "
                          f"pip install 'softboot[{','.join(missing)}]'")
    return list(dict.fromkeys(names))


def trainer_reporting(value: str, out: Path) -> tuple[list[str] | str, list[Any], dict[str, Any]]:
    """What the Trainer needs for ``--report-to``: its ``report_to``, extra callbacks, and extra
    TrainingArguments.  TensorBoard is wired by hand so its events land in ``OUT/tensorboard``."""
    names = parse_report_to(value)
    callbacks: list[Any] = []
    extra_args: dict[str, Any] = {}
    if "tensorboard" in names:
        import inspect

        from transformers import TrainingArguments
        from transformers.integrations import TensorBoardCallback

        logdir = str(Path(out) / TENSORBOARD_DIR)
        callback = TensorBoardCallback()
        callback.logging_dir = logdir  # transformers >= 5 reads this attribute
        callbacks.append(callback)
        if "logging_dir" in inspect.signature(TrainingArguments.__init__).parameters:
            extra_args["logging_dir"] = logdir  # transformers 4.x reads the argument
    rest = [n for n in names if n != "tensorboard"]
    return (rest or "none"), callbacks, extra_args
