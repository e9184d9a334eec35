"""The environment variables ssb reads, each with its type and bounds.

:func:`check_environment` runs once when the ``ssb`` command starts: a variable set to a value
outside what it can take (text for a number, a near-zero interval that would flood the log, a
plugin list with a stray separator) is one ``error:`` line naming the variable, never a
traceback at import nor a silent fallback to the default.  Code that reads a variable uses
:func:`env_value`, which applies the same check.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ssb.errors import SsbError


@dataclass(frozen=True)
class EnvVar:
    name: str
    type: type  # int, float or str
    help: str
    lo: float | None = None
    hi: float | None = None
    pattern: str | None = None  # for str: what the whole value must match

    def parse(self, raw: str) -> Any:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        if self.type is str:
            if self.pattern is not None and not re.fullmatch(self.pattern, raw):
                raise SsbError(f"environment variable {self.name}={shown!r} is invalid: "
                               f"{self.help}")
            return raw
        try:
            value = self.type(raw.strip())
        except ValueError:
            raise SsbError(f"environment variable {self.name}={shown!r} is not "
                           f"{'an integer' if self.type is int else 'a number'}: "
                           f"{self.help}") from None
        if isinstance(value, float) and not math.isfinite(value) or \
                (self.lo is not None and value < self.lo) or \
                (self.hi is not None and value > self.hi):
            raise SsbError(f"environment variable {self.name}={shown!r} is out of range "
                           f"({self.lo:g} to {self.hi:g}): {self.help}")
        return value


_PLUGIN_NAMES = r"\s*|\s*[A-Za-z0-9_.\-]+\s*(,\s*[A-Za-z0-9_.\-]+\s*)*,?\s*"

VARIABLES: dict[str, EnvVar] = {v.name: v for v in (
    EnvVar("SSB_PROGRESS_INTERVAL", float, "seconds between progress lines without a "
           "terminal, from 0.5 (more would flood the log) to 86400", lo=0.5, hi=86400),
    EnvVar("SSB_LOAD_PLUGINS", str, "plugin names separated by commas (empty: none)",
           pattern=_PLUGIN_NAMES),
    EnvVar("SSB_VERIFY_STARTUP_TIMEOUT", float, "seconds a verification helper may take to "
           "start", lo=1, hi=86400),
    EnvVar("SSB_VERIFY_MEMORY_MB", int, "the memory cap of a verification helper, in MiB",
           lo=64, hi=1 << 22),
    EnvVar("SSB_CODE_SANDBOX_UID_BASE", int, "the first uid of the code sandbox's 64 users",
           lo=1000, hi=(1 << 31) - 65),
)}


def env_value(name: str, default: Any = None) -> Any:
    """The checked value of a declared variable, or ``default`` when it is unset or empty."""
    raw = os.environ.get(name)
    spec = VARIABLES[name]
    if raw is None or (spec.type is not str and not raw.strip()):
        return default
    return spec.parse(raw)


def check_environment() -> None:
    """Refuse the first declared variable whose value it cannot take (one line, exit 2)."""
    for name in VARIABLES:
        env_value(name)


__all__ = ["EnvVar", "VARIABLES", "check_environment", "env_value"]
