"""ssb's stage benchmarks, run through one harness: ``python -m benchmarks --help``.

Each benchmark is a module ``benchmarks/bench_<name>.py`` exposing

* ``NAME``: the short name (``verify``),
* ``DESCRIPTION``: one line for ``--list``,
* ``run(quick: bool) -> list[dict]``: one dict per measured metric, with the keys
  ``metric, ours, baseline, ratio, unit, higher_is_better, note`` (and optionally ``target``:
  the value ``ours`` should reach).  ``baseline`` is measured in the same run, by a faithful
  re-implementation written in the benchmark itself (never in the product), so that a ratio
  stays meaningful on a loaded or different machine.

A benchmark stays runnable on its own (``python benchmarks/bench_verify.py [--quick]``) through
:func:`benchmarks.harness.standalone`.
"""
