"""Every process ssb starts dies with its parent (issues 13 and 21), by one mechanism,
:mod:`ssb.processes`.

* A real ``ssb verify --input big.jsonl`` is SIGKILLed while its helpers are busy in sympy; no
  helper may survive it (before the fix they ran on at full CPU, adopted by PID 1).  Helpers are
  found by the marker in their command line and by the parent pid they were started for (their
  environment), so one started just before the kill is found too.
* A real ``ssb run`` is SIGKILLed (the parent alone, not its group) while its curate child is
  generating: the child goes within seconds, writes no bogus error row, and the rerun resumes.
* The helper itself, on a busy child, with and without the kernel's signal, and through the
  ``python -m ssb.processes`` wrapper that ``ssb run`` puts around a launcher.
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


def _live_processes(marker: bytes):
    """(pid, ppid, environ) of every live (not zombie) process with ``marker`` among the words
    of its command line."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if marker not in cmdline:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except (OSError, IndexError):  # gone meanwhile
            continue
        if stat[0] not in ("Z", "X"):
            yield int(entry), int(stat[1]), environ


def _helpers_for(parent: int) -> set[int]:
    """Live (not zombie) verification helpers started by process ``parent``."""
    return {pid for pid, _, environ in _live_processes(HELPER_MARKER.encode())
            if f"SSB_VERIFY_PARENT={parent}".encode() in environ}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
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


# -- ssb.processes, directly -----------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _gone_within(pids, seconds: float) -> set[int]:
    """The pids still alive after waiting up to ``seconds`` for all of them to go."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


def _kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# A parent that starts one child the way ssb does (ssb.processes.child_env), prints its pid,
# and waits; the test SIGKILLs the parent.
_PARENT = """
import subprocess, sys
from ssb.processes import child_env, wrap_command
command = {command!r}
if {wrapped!r}:
    command = wrap_command(command)
child = subprocess.Popen(command, env=child_env())
print(child.pid, flush=True)
child.wait()
"""
# Busy in pure Python (the GIL is released between bytecodes: the watch thread can run).
_BUSY = ("from ssb.processes import die_with_parent; die_with_parent(watch=True)\n"
         "while True: pass")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how, pdeathsig", [
    ("helper", "1"),    # die_with_parent in the child: the kernel's signal
    ("helper", "0"),    # the same, with the parent-pid watch alone
    ("wrapper", "1"),   # python -m ssb.processes COMMAND: a program that is not ssb's
])
def test_a_child_dies_with_its_sigkilled_parent(how, pdeathsig):
    if how == "helper":
        command, wrapped = [sys.executable, "-c", _BUSY], False
    else:
        command, wrapped = ["sleep", "300"], True
    env = dict(os.environ, SSB_PDEATHSIG=pdeathsig)
    parent = subprocess.Popen([sys.executable, "-c", _PARENT.format(command=command,
                                                                    wrapped=wrapped)],
                              stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    try:
        time.sleep(1.0)  # past its start-up: armed, and computing (or sleeping)
        assert _alive(child)
        parent.kill()
        parent.wait(timeout=30)
        assert not _gone_within([child], 5.0), "the child outlived its SIGKILLed parent"
    finally:
        _kill_all([child])
        parent.stdout.close()


# -- ssb run's stage child ------------------------------------------------------------------

_RUN_CONFIG = """
domain = "coinflip"
backend = "transformers"
model = "{model}"
seed = 0
eval = ["coinflip"]
eval-limit = 4
eval-max-tokens = 8
# coinflip's 12 training problems: with seed 0 some are kept, so distill has records to train on

[curate]
rollouts = 4
max-tokens = 96
batch-size = 4

[distill]
epochs = 1
batch-size = 2
lora-r = 4
lora-alpha = 8
max-length = 512
"""


def _stage_children(parent: int) -> set[int]:
    """Live ``python -m ssb.stages.child`` processes whose parent is ``parent``."""
    return {pid for pid, ppid, _ in _live_processes(b"ssb.stages.child") if ppid == parent}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_run_leaves_no_stage_child_and_no_error_row(tmp_path, tiny_model_dir,
                                                               coinflip_path):
    """Issue 21: the curate child of a SIGKILLed ``ssb run`` computed on for minutes, held the
    output lock against the rerun, and, once it wrote its next progress event into the dead
    parent's pipe, journaled a ``BrokenPipeError`` as the failure of a batch of problems.
    (Without the fix, on the shared 2-core box: the child still computed 120 s after the kill.)"""
    from conftest import plugin_env, ssb_subprocess

    out = tmp_path / "run"
    cfg = tmp_path / "run.toml"
    cfg.write_text(_RUN_CONFIG.format(model=tiny_model_dir))
    journal = out / "curate" / "journal.jsonl"
    args = ["--config", str(cfg), "--out", str(out)]
    with open(tmp_path / "first.err", "w") as err:
        # 48 verifications at 0.25 s: curate lasts ~12 s even where the tiny model generates a
        # batch in a fraction of a second (on the CI box it finished within the 2 s below).
        env = dict(plugin_env(coinflip_path), COINFLIP_VERIFY_SECONDS="0.25")
        proc = subprocess.Popen([sys.executable, "-m", "ssb", "run", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 600  # imports and the model load on a busy 2-core box
        # Kill once curate is generating (its first progress line is out).
        while time.monotonic() < deadline and proc.poll() is None:
            children |= _stage_children(proc.pid)
            if children and "[curate]" in (tmp_path / "first.err").read_text():
                break
            time.sleep(0.2)
        time.sleep(2.0)
        assert proc.poll() is None, (tmp_path / "first.err").read_text()[-3000:]
        children |= _stage_children(proc.pid)
        assert children, "no stage child found"
        proc.send_signal(signal.SIGKILL)  # the parent alone: its child is not signalled
        proc.wait(timeout=30)
        survivors = _gone_within(children, 5.0)
        assert not survivors, f"stage children outlived their SIGKILLed parent: {survivors}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        _kill_all(children)
    text = journal.read_text() if journal.exists() else ""
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert len(rows) < 12, "curate finished before the kill: the test did not catch it mid-way"
    assert not [r for r in rows if r.get("status") == "error"], rows
    assert "BrokenPipe" not in text

    again = ssb_subprocess("run", args, coinflip_path)
    _, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr[-4000:]
    assert "[run] curate" in stderr and "[run] distill" in stderr
    stats = json.loads((out / "curate" / "stats.json").read_text())
    assert stats["complete"] and stats["problems_seen"] == 12 and not stats["skipped"]["errors"]
    assert (out / "report.md").exists()
