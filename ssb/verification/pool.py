"""A pool of killable helper processes: :func:`run_bounded` runs one call in one of them, at
most ``timeout`` seconds.

Why not math-verify's own timeout: it uses ``signal.alarm``, which only works in the main thread
and cannot interrupt long C-level work (``9^{9^{9}}`` spends its time inside one big-int power).
So the expensive step (sympy parsing + comparison) runs in a small pool of persistent helper
processes that the caller can kill: a call (JSON in, JSON out; never pickle) goes to an idle
helper, and one that overruns is killed and replaced while the call raises
:class:`VerificationTimeout`.  Inside a helper, nested calls run inline (the outer deadline
already bounds them).

Helpers die with the process that started them (:func:`ssb.processes.die_with_parent`: the
kernel's parent-death signal on Linux, and a watch of the parent pid everywhere), so a
SIGKILLed ``ssb`` leaves no helper spinning under PID 1.
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from ssb.environment import env_value
from ssb.processes import child_env, die_with_parent
from ssb.verification.guard import MAX_RESULT_DIGITS

_WORKER_ENV = "SSB_VERIFY_WORKER"
_PARENT_ENV = "SSB_VERIFY_PARENT"  # pid the helper must outlive no longer than
# argv[1] of every helper, so that `ps`/tests can tell verification helpers apart.
HELPER_MARKER = "ssb-verify-helper"
DEFAULT_TIMEOUT = 5.0
STARTUP_TIMEOUT = env_value("SSB_VERIFY_STARTUP_TIMEOUT", 120.0)  # checked: ssb.environment
# Address-space cap of a helper (MiB): a hostile answer gets MemoryError, not the machine's RAM.
WORKER_MEMORY_MB = env_value("SSB_VERIFY_MEMORY_MB", 4096)

log = logging.getLogger(__name__)


class VerificationTimeout(Exception):
    """A bounded call overran its deadline (its helper process was killed)."""


class WorkerError(Exception):
    """A helper process died or answered with an error."""


def in_worker() -> bool:
    """True inside a verification helper process."""
    return os.environ.get(_WORKER_ENV) == "1"


def worker_function(fn: Callable) -> Callable:
    """Mark a module-level function as callable in a helper via :func:`run_bounded`."""
    fn.__ssb_worker__ = True  # type: ignore[attr-defined]
    return fn


class _Spawner:
    """Starts helper processes from one long-lived thread.

    Why a thread of its own: Linux sends the parent-death signal (set by each helper, see
    :func:`ssb.processes.die_with_parent`) when the *thread* that forked the helper exits, not
    the process, and :func:`~ssb.verification.verify_batch` calls the pool from short-lived
    executor threads: a helper forked there would be killed at the end of every batch.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="ssb-verify-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            make, box, done = self._requests.get()
            try:
                box.append((True, make()))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box.append((False, exc))
            done.set()

    def run(self, make: Callable[[], Any]) -> Any:
        box: list = []
        done = threading.Event()
        self._requests.put((make, box, done))
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value


_SPAWNER: _Spawner | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawn(make: Callable[[], Any]) -> Any:
    """``make()`` (which starts a process) on the spawner thread (a fresh one after ``fork``)."""
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None or _SPAWNER.pid != os.getpid():
            _SPAWNER = _Spawner()
        spawner = _SPAWNER
    return spawner.run(make)


class _Worker:
    """One helper process speaking JSON lines over its stdin/stdout."""

    def __init__(self) -> None:
        env = child_env(var=_PARENT_ENV)
        env[_WORKER_ENV] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        self._stderr = tempfile.TemporaryFile()
        self.proc = _spawn(lambda: subprocess.Popen(
            [sys.executable, "-c", "from ssb.verification.pool import _worker_main; _worker_main()",
             HELPER_MARKER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            close_fds=True,
        ))
        self._buffer = b""
        self._seq = 0
        ready = self._read_message(time.monotonic() + STARTUP_TIMEOUT)
        if ready is None or not ready.get("ready"):
            self.kill()
            raise WorkerError(f"verification helper failed to start: {self.stderr_tail()}")

    def stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def call(self, func: str, args: list, timeout: float) -> Any:
        self._seq += 1
        request = json.dumps({"id": self._seq, "func": func, "args": args}) + "\n"
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(request.encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"verification helper died: {exc}") from None
        reply = self._read_message(time.monotonic() + timeout)
        if reply is None:
            if self.proc.poll() is not None:
                raise WorkerError(f"verification helper died: {self.stderr_tail()[-300:]}")
            raise VerificationTimeout(f"verification exceeded {timeout:g}s")
        if reply.get("id") != self._seq:
            raise WorkerError("verification helper answered out of order")
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply.get("result")

    def _read_message(self, deadline: float) -> dict | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None  # helper exited
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return {"error": f"garbled reply from helper: {line[:200]!r}"}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - best effort on a dying process
            pass
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                if f is not None:
                    f.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        """Ask politely (EOF on stdin), then kill."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except Exception:  # noqa: BLE001
            pass
        self.kill()


class WorkerPool:
    """Persistent helpers shared by all threads of a process; grows up to ``capacity``."""

    def __init__(self, capacity: int = 1):
        self.capacity = max(1, capacity)
        self._idle: list[_Worker] = []
        self._busy = 0
        self._cond = threading.Condition()
        self._pid = os.getpid()
        self.started = 0  # helpers started (for tests/benchmarks: replacements after kills)

    def ensure_capacity(self, n: int) -> None:
        with self._cond:
            if n > self.capacity:
                self.capacity = n
                self._cond.notify_all()

    def call(self, func: str, args: list, timeout: float) -> Any:
        with self._cond:
            while self._busy >= self.capacity:
                self._cond.wait()
            self._busy += 1
            worker = self._idle.pop() if self._idle else None
        try:
            if worker is None or not worker.alive():
                if worker is not None:
                    worker.kill()
                worker = _Worker()
                with self._cond:
                    self.started += 1
            try:
                result = worker.call(func, args, timeout)
            except (VerificationTimeout, WorkerError):
                worker.kill()  # its state is unknown: replace it on the next call
                worker = None
                raise
            return result
        finally:
            with self._cond:
                if worker is not None:
                    self._idle.append(worker)
                self._busy -= 1
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for w in idle:
            w.close()


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool(min_capacity: int = 1) -> WorkerPool:
    """The process-wide helper pool (a fresh one after ``fork``)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._pid != os.getpid():
            _POOL = WorkerPool(max(1, min_capacity))
        else:
            _POOL.ensure_capacity(min_capacity)
        return _POOL


def shutdown_pool() -> None:
    """Stop all helper processes (they also stop when this process exits)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool._pid == os.getpid():
        pool.close()


atexit.register(shutdown_pool)


def _ref(fn: Callable) -> str:
    if not getattr(fn, "__ssb_worker__", False):
        raise TypeError(f"{fn!r} is not marked with @ssb.verification.worker_function")
    return f"{fn.__module__}:{fn.__qualname__}"


def run_bounded(fn: Callable, *args: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """``fn(*args)`` in a killable helper, at most ``timeout`` seconds (JSON-able args/result).

    Raises :class:`VerificationTimeout` on overrun and :class:`WorkerError` if the helper dies
    or ``fn`` raises.  In a helper (or with ``timeout`` None) it runs inline.
    """
    ref = _ref(fn)
    if in_worker() or timeout is None:
        return fn(*args)
    return get_pool().call(ref, list(args), float(timeout))


def _worker_main() -> None:
    """The helper's loop: one JSON request per line on stdin, one JSON reply per line."""
    os.environ[_WORKER_ENV] = "1"
    # A helper busy in sympy would otherwise run on at full CPU, adopted by PID 1, after its
    # parent is SIGKILLed (it only notices EOF on stdin between requests).
    die_with_parent(_PARENT_ENV, watch=True, name="ssb-verify-parent-watch")
    try:
        import resource

        limit = WORKER_MEMORY_MB * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    try:  # pay the sympy import before saying ready, so deadlines measure real work
        import math_verify  # noqa: F401
        import sympy  # noqa: F401
    except ImportError:
        pass
    sys.set_int_max_str_digits(MAX_RESULT_DIGITS * 10) if hasattr(sys, "set_int_max_str_digits") else None
    out = sys.stdout.buffer
    out.write(b'{"ready": true}\n')
    out.flush()
    functions: dict[str, Callable] = {}
    for raw in sys.stdin.buffer:
        try:
            request = json.loads(raw)
            ref = request["func"]
            fn = functions.get(ref)
            if fn is None:
                module, _, qualname = ref.partition(":")
                obj: Any = importlib.import_module(module)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
                if not getattr(obj, "__ssb_worker__", False):
                    raise TypeError(f"{ref} is not a worker function")
                fn = functions[ref] = obj
            reply = {"id": request.get("id"), "result": fn(*request.get("args", []))}
        except BaseException as exc:  # noqa: BLE001 - report, keep serving
            if isinstance(exc, KeyboardInterrupt):
                raise
            reply = {"id": request.get("id") if isinstance(request, dict) else None,
                     "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        try:
            line = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            line = json.dumps({"id": reply.get("id"), "error": f"unserializable result: {exc}"})
        out.write(line.encode("utf-8") + b"\n")
        out.flush()

__all__ = ["DEFAULT_TIMEOUT", "HELPER_MARKER", "VerificationTimeout", "WorkerError", "WorkerPool",
           "get_pool", "in_worker", "run_bounded", "shutdown_pool", "worker_function"]
