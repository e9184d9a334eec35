"""Every bad input gets one line, exit 2, and leaves the output directory usable (issue 13).

Runs every case of ``scripts/probe_bad_inputs.py`` (issue 13's list and the inputs next to each:
distill settings, malformed curated records, broken adapters, export targets, models that are
neither a path nor a reachable hub id, a full disk, runs ``eval compare`` must not pair) as a
real ``ssb`` process, and requires each to be clean: exit 2, one ``error:`` line besides
progress, no traceback, and no manifest left in a fresh ``--out`` that would refuse the corrected
command.  Issue 21's cases (``i21-*``) add every class of its section 3: tracebacks (deep JSON,
``-B`` values, TOML shapes, ``--out``, FIFOs and /proc files, ``--resamples``, ``export``), errors
of more than one line (the typer layer), hangs and runaway resources (a FIFO ``--config``,
``--max-tokens`` past the context, a billion generated problems, a 17 MiB row, a tiny progress
interval) and silent accepts (self-contradicting curated records, NaN sampling, look-alike
plugin names, duplicate rows, bad environment values); their error line must name the file:line
or the option.  The measured share goes into docs/reliability.md
(``python scripts/probe_bad_inputs.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "probe_bad_inputs.py"


def _probe():
    spec = importlib.util.spec_from_file_location("probe_bad_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_bad_input_is_one_clean_line(tmp_path):
    probe = _probe()
    assert len(probe.CASES) >= 99
    outcomes = probe.run_all(probe.CASES, tmp_path, jobs=2)
    unclean = [(o.name, o.rc, o.reason, o.error_lines) for o in outcomes if o.clean is False]
    assert unclean == []
    summary = probe.summary(outcomes)
    assert summary["clean"] == summary["tried"] == len(probe.CASES) - summary["skipped"]
