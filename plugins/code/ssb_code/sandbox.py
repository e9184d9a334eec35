"""Run untrusted candidate code against a test program, isolated, and say what happened.

Never in ssb's process: every run is a separate supervisor process (``_runner.py``, started with
``python -I -S`` in a new session) that forks the candidate's process and execs a fresh
``python -I`` in it, which runs ``_harness.py``: the candidate, then the tests, then a random
sentinel on a private pipe.  A run passes only when that sentinel line says so.

Guarantees when ssb runs as root (the case of CI and of this project's machines), each one
checked by a test in tests/code/test_sandbox.py:

* **Unprivileged user.**  The candidate runs as a dedicated uid/gid with no supplementary
  groups and ``no_new_privs``.  Each concurrent run holds its own uid from a reserved range
  (``SSB_CODE_SANDBOX_UID_BASE``, default 59900, 64 slots; uids that have a passwd entry are
  skipped), claimed with ``flock`` across processes, so per-uid limits and sweeps never touch
  another run.
* **Resource limits.**  ``RLIMIT_CPU`` (then SIGKILL), ``RLIMIT_AS`` (memory),
  ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_NPROC`` (counted per uid, threads included) and
  no core files.
* **Namespaces.**  New PID, network, mount, IPC and UTS namespaces.  The candidate is PID 1 of
  its PID namespace: when it exits or is killed, the kernel kills every process it started,
  detached (double fork + ``setsid``) ones included, before the exit is reported.  Its network
  namespace has only a loopback interface that is down: no connection to anything, the host's
  loopback included.  In its mount namespace every mount is read-only except fresh,
  size-capped tmpfs on /tmp, /var/tmp and /dev/shm that vanish with it; /proc shows only its
  own processes.
* **Empty environment.**  A fixed handful of variables (PATH, LANG, HOME, TMPDIR and
  one-thread settings for numeric libraries); nothing from ssb's environment: no tokens, no
  proxy variables.
* **Wall-clock deadline.**  The supervisor kills the candidate (and so its namespace) at the
  deadline; ssb kills the supervisor's process group if it ever overruns, and the candidate has
  a parent-death signal (:func:`ssb.processes.set_parent_death_signal`).  The supervisor itself
  outlives a killed ssb only up to that deadline, on purpose: it still cleans up after the
  candidate (the fallbacks below) and then exits.

Where the system refuses a namespace (a container without CAP_SYS_ADMIN, say), the run still
happens and the report lists what it got (:func:`isolation`):

* no PID namespace: after the run the supervisor kills the candidate's process group, then every
  process of the slot's uid (``kill(-1)`` from a child that became that uid);
* no mount namespace: the candidate works in a fresh host directory that is removed afterwards,
  and files the uid left in world-writable directories (/tmp, /var/tmp, /dev/shm, /run/lock) are
  removed; the interpreter must then be reachable by the sandbox uid (``SSB_CODE_PYTHON``);
* no network namespace: **the network is not blocked** -- a warning is logged once per process.
  Do not verify untrusted code on such a machine if that matters.

When ssb does not run as root, the candidate runs as ssb's own user: the supervisor asks for an
unprivileged user namespace (same isolation as above, without the uid change or
``RLIMIT_NPROC``); without one, only the resource limits, the process group and the deadline
apply.

The interpreter is the *base* interpreter of ssb's Python (``sys.base_prefix``, not the
virtualenv: the candidate sees the standard library, not torch), or ``SSB_CODE_PYTHON``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import pwd
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import ssb.processes as processes
from ssb.processes import usable_cores

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
RUNNER = _HERE / "_runner.py"
HARNESS = (_HERE / "_harness.py").read_text(encoding="utf-8")

UID_BASE = int(os.environ.get("SSB_CODE_SANDBOX_UID_BASE", "59900"))
SLOTS = 64
NAMESPACES = ("pid", "net", "mount", "ipc", "uts")

PASSED, FAILED, TIMEOUT, CRASHED, ERROR = "passed", "failed", "timeout", "crashed", "error"

_SIGNAL_NOTES = {
    signal.SIGXCPU: "CPU time limit",
    signal.SIGKILL: "killed: CPU time or memory limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGSEGV: "segmentation fault",
}


@dataclass(frozen=True)
class Limits:
    """What one run may use.  ``cpu_s`` defaults to the wall-clock timeout rounded up."""

    timeout: float = 10.0  # wall-clock seconds, start-up included
    cpu_s: int | None = None
    memory_mb: int = 1024  # address space of each process
    fsize_mb: int = 16  # largest file it may write
    nofile: int = 64
    nproc: int = 32  # processes and threads of the sandbox uid
    tmpfs_mb: int = 64  # each of /tmp, /var/tmp, /dev/shm inside the sandbox
    max_output: int = 16_384  # bytes of stdout+stderr kept
    lazy_annotations: bool = True  # see _harness.py
    # Namespaces to ask for; fewer than all is for testing the fallbacks described above.
    namespaces: tuple[str, ...] = ("pid", "net", "mount", "ipc", "uts")

    def job_limits(self) -> dict:
        cpu = self.cpu_s if self.cpu_s is not None else max(1, math.ceil(self.timeout))
        return {"cpu_s": cpu, "memory_mb": self.memory_mb, "fsize_mb": self.fsize_mb,
                "nofile": self.nofile, "nproc": self.nproc}


@dataclass
class RunResult:
    """One run: ``status`` is passed / failed / timeout / crashed / error (the sandbox itself
    failed); ``detail`` says why in one short line that starts with the status."""

    status: str
    detail: str
    seconds: float = 0.0
    output: str = ""
    namespaces: list[str] = field(default_factory=list)
    uid: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Interpreter and uid slots


def sandbox_python() -> tuple[str, str]:
    """(interpreter path, its prefix) for candidates."""
    override = os.environ.get("SSB_CODE_PYTHON")
    if override:
        exe = os.path.realpath(override)
        return exe, os.path.dirname(os.path.dirname(exe))
    base = getattr(sys, "_base_executable", None) or sys.executable
    exe = os.path.realpath(base)
    prefix = os.path.realpath(sys.base_prefix)
    if not exe.startswith(prefix + os.sep):
        prefix = os.path.dirname(os.path.dirname(exe))
    return exe, prefix


def _slot_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"ssb-code-slots-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = path.lstat()
    # Someone else's directory (or a symlink) here could let them steal or block slots.
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise RuntimeError(f"{path} is not a private directory of this user; remove it")
    return path


def _usable_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False  # a real account: never run candidates as it, never sweep its processes


_slot_lock = threading.Lock()
_next_slot = 0


@contextmanager
def claim_uid() -> Iterator[int]:
    """A sandbox uid no other run (in any process) holds, for the duration of the block."""
    global _next_slot
    if os.geteuid() != 0:
        yield os.getuid()
        return
    directory = _slot_dir()
    with _slot_lock:
        start = _next_slot
        _next_slot = (_next_slot + 1) % SLOTS
    while True:
        for i in range(SLOTS):
            slot = (start + i) % SLOTS
            uid = UID_BASE + slot
            if not _usable_uid(uid):
                continue
            fd = os.open(directory / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                os.close(fd)  # releases the lock
            return
        time.sleep(0.01)  # all slots busy


# ---------------------------------------------------------------------------------------------
# One run


_warned = False


def _warn_isolation(namespaces: list[str]) -> None:
    global _warned
    if _warned or "net" in namespaces:
        return
    _warned = True
    log.warning("code sandbox: no network namespace on this system (got %s); candidate code "
                "can reach the network", namespaces or "none")


def run_tests(solution: str, tests: str, limits: Limits = Limits()) -> RunResult:
    """Run ``solution`` then ``tests`` in the sandbox; never raises for anything the code does."""
    python, prefix = sandbox_python()
    sentinel = secrets.token_hex(16)
    payload = json.dumps({"sentinel": sentinel, "solution": solution, "tests": tests,
                          "lazy_annotations": limits.lazy_annotations})
    with claim_uid() as uid:
        job = {"uid": uid, "gid": uid, "timeout": limits.timeout, "limits": limits.job_limits(),
               "tmpfs_mb": limits.tmpfs_mb, "max_output": limits.max_output,
               "namespaces": list(limits.namespaces), "python": python, "python_prefix": prefix,
               "harness": HARNESS, "payload": payload, "processes": processes.__file__}
        report = _supervise(job, limits.timeout)
    result = interpret(report, sentinel, limits)
    result.uid = uid
    if result.status != ERROR:
        _warn_isolation(result.namespaces)
    return result


def _supervise(job: dict, timeout: float) -> dict:
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(RUNNER)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={}, close_fds=True,
            start_new_session=True, cwd="/")
    except OSError as exc:
        return {"supervisor_error": f"cannot start the sandbox supervisor: {exc}"}
    try:
        # The supervisor enforces the deadline itself; this is only the backstop.
        out, err = proc.communicate(json.dumps(job).encode(), timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its group; the candidate dies with it
        except OSError:
            pass
        proc.communicate()
        return {"supervisor_error": "the sandbox supervisor overran its deadline and was killed"}
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return {"supervisor_error": f"sandbox supervisor failed (exit {proc.returncode}): "
                                    f"{tail[0][:300]}"}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def interpret(report: dict, sentinel: str, limits: Limits) -> RunResult:
    """The supervisor's report -> a :class:`RunResult` (only a sentinel line can pass)."""
    if "supervisor_error" in report:
        msg = report["supervisor_error"]
        return RunResult(ERROR, f"error: {msg}"[:400])
    common = {"seconds": report.get("seconds", 0.0), "output": report.get("output", ""),
              "namespaces": report.get("namespaces", [])}
    if report.get("setup_error"):
        return RunResult(ERROR, f"error: sandbox setup failed: {report['setup_error']}"[:400],
                         **common)
    verdict = None
    prefix = sentinel + " "
    for line in report.get("result", "").splitlines():
        if line.startswith(prefix):
            try:
                verdict = json.loads(line[len(prefix):])
            except json.JSONDecodeError:
                verdict = None
    if isinstance(verdict, dict) and verdict.get("status") == PASSED:
        return RunResult(PASSED, "passed", **common)
    if isinstance(verdict, dict) and verdict.get("status") == FAILED:
        return RunResult(FAILED, f"failed: {verdict.get('detail', '')}"[:600], **common)
    if report.get("timed_out"):
        return RunResult(TIMEOUT, f"timeout: no verdict within {limits.timeout:g}s", **common)
    sig = report.get("signal")
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        note = _SIGNAL_NOTES.get(sig)
        detail = f"crashed: killed by {name}" + (f" ({note})" if note else "")
    else:
        detail = (f"crashed: exited with code {report.get('exit_code')} before the tests "
                  "finished")
    last = _last_line(common["output"])
    if last:
        detail += f" | output: {last}"
    return RunResult(CRASHED, detail[:600], **common)


# ---------------------------------------------------------------------------------------------
# Many runs


def default_workers() -> int:
    return usable_cores()


def run_many(pairs: Sequence[tuple[str, str]], limits: Limits = Limits(),
             workers: int | None = None) -> list[RunResult]:
    """:func:`run_tests` over ``(solution, tests)`` pairs, ``workers`` at a time (default: one
    per available core), results in order."""
    pairs = list(pairs)
    if not pairs:
        return []
    workers = max(1, min(workers or default_workers(), len(pairs), SLOTS))
    if workers == 1:
        return [run_tests(s, t, limits) for s, t in pairs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ssb-code") as ex:
        return list(ex.map(lambda p: run_tests(p[0], p[1], limits), pairs))


def isolation() -> dict:
    """What this machine gives a sandbox run: namespaces obtained, uid, interpreter."""
    result = run_tests("", "", Limits(timeout=30))
    python, _ = sandbox_python()
    return {"status": result.status, "detail": result.detail, "namespaces": result.namespaces,
            "root": os.geteuid() == 0, "uid": result.uid, "python": python}


__all__ = ["Limits", "RunResult", "run_tests", "run_many", "isolation", "interpret",
           "claim_uid", "sandbox_python", "PASSED", "FAILED", "TIMEOUT", "CRASHED", "ERROR"]
