"""Without a terminal, a long stage says how far it is, every few seconds (issue 13).

Before, ``ssb curate > log 2>&1`` printed nothing for 30 minutes.  Now the line renderer prints
``[task] done/total (pct) rate [ETA] elapsed | info`` on stderr every ``$SSB_PROGRESS_INTERVAL``
seconds (10 by default; shortened here) -- also while a long backend call sends no event.

A real ``ssb curate`` with stderr on a pipe, over recorded real rollouts (the ``replay`` backend,
``-B delay`` seconds per generate call): all eight problems go in one rollout call and one
teacher call, so for two delays no event arrives and every line then comes from the clock.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

RECORDING = Path(__file__).resolve().parent.parent / "data" / "recorded_rollouts_arithmetic.jsonl"
LINE = re.compile(r"^\[curate\] (\d+)/8 \(\d+%\) [\d.]+/s( ETA \d+:\d\d)? elapsed \d+:\d\d"
                  r"( done)? \| kept \d+ .*$")
INTERVAL = 0.5
DELAY = 3.0


@pytest.mark.slow
def test_progress_lines_keep_coming_without_a_terminal(replay_plugin, tmp_path):
    env = {**os.environ, "SSB_PROGRESS_INTERVAL": str(INTERVAL),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(replay_plugin),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssb", "curate", "--domain", "arithmetic", "--split", "train",
         "--backend", "replay", "--model", str(RECORDING), "-B", f"delay={DELAY}",
         "--limit", "8", "--seed", "0", "--rollouts", "4", "--temperature", "0.8",
         "--top-k", "50", "--max-tokens", "400", "--batch-size", "8",
         "--template", "arithmetic-tutor@1",  # the template the recording was captured with
         "--out", str(tmp_path / "curate")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    received: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            received.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read)
    reader.start()
    proc.wait(timeout=600)
    reader.join()
    text = "\n".join(line for _, line in received)
    assert proc.returncode == 0, text

    assert received and all(LINE.match(line) for _, line in received), text  # nothing else
    assert received[0][1].startswith("[curate] 0/8 (0%)"), text
    assert received[-1][1].startswith("[curate] 8/8 (100%)") and " done " in received[-1][1]
    # Two silent backend calls of DELAY seconds: lines keep coming on the clock, about one per
    # interval (slack for a loaded machine), never a silence much longer than the interval.
    times = [t for t, _ in received]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(received) >= 2 * DELAY / INTERVAL, text
    assert max(gaps) < INTERVAL + 1.5, (gaps, text)
