"""The pipeline stages, one module each: curate, distill, evaluate, run (and study).

Each stage is a function that takes its config dataclass (one source of truth for its options,
see :mod:`ssb.options`), an optional event callback (:mod:`ssb.events`) and returns a typed
result.  The public names are re-exported by :mod:`ssb` (``ssb.curate(ssb.CurateConfig(...))``).
"""
