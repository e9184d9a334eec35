"""Verification helpers die with their parent (issue 13).

A real ``ssb verify --input big.jsonl`` is SIGKILLed while its helpers are busy in sympy; no
helper may survive it (before the fix they ran on at full CPU, adopted by PID 1).  Helpers are
found by the marker in their command line and by the parent pid they were started for (their
environment), so one started just before the kill is found too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssb.verification import HELPER_MARKER

# Passes the cheap guard (a power of 50 is allowed), then keeps sympy busy (pure Python) for
# minutes: the same pair as tests/test_verification.py's SLOW_BUT_INNOCENT.
SLOW = (r"\sin(x)^{50}", r"\cos(x)^{50}")


def _helpers_for(parent: int) -> set[int]:
    """Live (not zombie) verification helpers started by process ``parent``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if HELPER_MARKER.encode() not in cmdline:
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile
            continue
        if f"SSB_VERIFY_PARENT={parent}".encode() in environ and state not in ("Z", "X"):
            found.add(int(entry))
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("workers, pdeathsig", [
    (2, "1"),   # the kernel's parent-death signal
    (2, "0"),   # the fallback alone: the helper's parent-pid watch
    (0, "1"),   # in-process mode: one helper for the sympy step
])
def test_sigkill_of_verify_leaves_no_helper(tmp_path, workers, pdeathsig):
    big = tmp_path / "big.jsonl"
    with open(big, "w") as f:
        for _ in range(200):
            f.write(json.dumps({"response": rf"\boxed{{{SLOW[1]}}}", "gold": SLOW[0]}) + "\n")
    env = dict(os.environ, SSB_VERIFY_PDEATHSIG=pdeathsig)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssb", "verify", "--domain", "math", "--input", str(big),
         "--workers", str(workers), "--timeout", "600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    expected = max(1, workers)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 180  # imports and helper start-up on a busy 2-core box
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= _helpers_for(proc.pid)
            # busy = past start-up (sympy import, ~1 s CPU) and into the comparison
            busy = [p for p in seen if p in _helpers_for(proc.pid) and _cpu_seconds(p) > 3.0]
            if len(busy) >= expected:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert len(seen) >= expected, f"helpers never became busy: {seen}"

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _helpers_for(proc.pid):
            time.sleep(0.1)
        survivors = _helpers_for(proc.pid)
        assert not survivors, f"helpers outlived their SIGKILLed parent: {survivors}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pid in _helpers_for(proc.pid):  # never leave one spinning, even when failing
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.stderr.close()
