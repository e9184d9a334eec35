"""ssb: Semantic Soft Bootstrapping — RL-free self-distillation for reasoning.

The Python API is the real surface; the ``ssb`` command line is a thin face over it::

    import ssb

    curated = ssb.curate(ssb.CurateConfig(domain="arithmetic", backend="llama.cpp",
                                          model="default", out="runs/c", limit=16))
    student = ssb.distill(ssb.DistillConfig(curated="runs/c", model="default", out="runs/d"))
    result = ssb.evaluate(ssb.EvalConfig(dataset="arithmetic", backend="llama.cpp",
                                         model="default", adapter=str(student.adapter),
                                         out="runs/e"))

Every stage takes its config dataclass (one source of truth for its options, see
:mod:`ssb.options`) and an optional ``on_event`` callback (:mod:`ssb.events`), and returns a
typed result.  Names are loaded lazily so ``import ssb`` stays cheap (no torch).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("softboot")  # the distribution's name (the package is `ssb`)
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

_API = {
    "curate": "ssb.stages.curate", "CurateConfig": "ssb.stages.curate",
    "CurateResult": "ssb.stages.curate",
    "distill": "ssb.stages.distill.trainer", "DistillConfig": "ssb.stages.distill.trainer",
    "DistillResult": "ssb.stages.distill.trainer",
    "evaluate": "ssb.stages.evaluate", "EvalConfig": "ssb.stages.evaluate",
    "EvalResult": "ssb.stages.evaluate", "compare_runs": "ssb.stages.evaluate",
    "run": "ssb.stages.run", "RunConfig": "ssb.stages.run", "RunResult": "ssb.stages.run",
    "study": "ssb.stages.study", "StudyConfig": "ssb.stages.study",
    "StudyResult": "ssb.stages.study",
    "get_registry": "ssb.plugins", "Event": "ssb.events",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'ssb' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
