"""ssb.processes: one count of usable cores, honoured by everything that sizes a pool by it.

(That every child dies with its parent is tested with real SIGKILLs in
tests/reliability/test_helpers_die.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity")


def _pinned(code: str) -> str:
    """Run ``code`` in a Python pinned to one core; its stdout."""
    one = min(os.sched_getaffinity(0))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {one}), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_usable_cores_follows_the_affinity_mask():
    """A process pinned to one core counts one, in every place that sizes a pool by cores."""
    code = ("from ssb.processes import usable_cores\n"
            "from ssb.verification import available_cores, resolve_workers\n"
            "from ssb_code.sandbox import default_workers\n"
            "print(usable_cores(), available_cores(), resolve_workers(None, 50), "
            "default_workers())")
    assert _pinned(code).split() == ["1", "1", "1", "1"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_batched_llama_samples_on_the_usable_cores_only(small_gguf):
    """The batched llama.cpp decoder draws its slots' tokens on one thread per core: pinned to
    one core, there is no thread pool (it used os.cpu_count(), the machine's cores)."""
    pytest.importorskip("llama_cpp")
    code = ("from ssb.plugins import get_registry\n"
            f"b = get_registry().backend('llama.cpp').create({str(small_gguf)!r}, n_parallel=2, "
            "n_ctx=256)\n"
            "print(b.decoder is not None, b.decoder._pool is None)\n"
            "b.close()")
    assert _pinned(code).split()[-2:] == ["True", "True"]
