"""Time-bounded answer verification, safe in any thread and in worker processes.

Why not math-verify's own timeout: it uses ``signal.alarm``, which only works in the main thread
and cannot interrupt long C-level work (``9^{9^{9}}`` spends its time inside one big-int power).
So the expensive step (sympy parsing + comparison) runs in a small pool of persistent helper
processes that the caller can kill:

* :func:`run_bounded` sends one call (JSON in, JSON out; never pickle) to an idle helper and waits
  at most ``timeout`` seconds; a helper that overruns is killed and replaced and the call raises
  :class:`VerificationTimeout`.  Inside a helper, nested calls run inline (the outer deadline
  already bounds them).
* :func:`check_complexity` is a cheap in-process guard that rejects pathological answers (huge,
  deeply nested, giant exponent towers or factorials) before any sympy work.
* :func:`verify_batch` verifies ``(response, gold)`` pairs for a domain, in-process
  (``workers=0``: the verifier runs here, only its sympy step goes to a helper) or spread over
  ``workers`` helpers, each item with its own deadline.

Model text is never evaluated: math-verify parses LaTeX into sympy objects without ``eval``.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import json
import logging
import math
import os
import queue
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ssb.records import Verdict

_WORKER_ENV = "SSB_VERIFY_WORKER"
_PARENT_ENV = "SSB_VERIFY_PARENT"  # pid the helper must outlive no longer than
# Set to "0" to skip prctl(PR_SET_PDEATHSIG) in helpers (tests use it to exercise the fallback).
_PDEATHSIG_ENV = "SSB_VERIFY_PDEATHSIG"
# argv[1] of every helper, so that `ps`/tests can tell verification helpers apart.
HELPER_MARKER = "ssb-verify-helper"
DEFAULT_TIMEOUT = 5.0
STARTUP_TIMEOUT = float(os.environ.get("SSB_VERIFY_STARTUP_TIMEOUT", "120"))
# Address-space cap of a helper (MiB): a hostile answer gets MemoryError, not the machine's RAM.
WORKER_MEMORY_MB = int(os.environ.get("SSB_VERIFY_MEMORY_MB", "4096"))

# Limits of check_complexity (legit final answers are far below all of them).
MAX_ANSWER_CHARS = 1_000
MAX_NESTING = 40
MAX_RESULT_DIGITS = 100_000
MAX_FACTORIAL = 5_000

log = logging.getLogger(__name__)


class VerificationTimeout(Exception):
    """A bounded call overran its deadline (its helper process was killed)."""


class WorkerError(Exception):
    """A helper process died or answered with an error."""


def in_worker() -> bool:
    """True inside a verification helper process."""
    return os.environ.get(_WORKER_ENV) == "1"


# ---------------------------------------------------------------------------------------------
# Cheap in-process guard


_OPEN = {"(": ")", "[": "]", "{": "}"}
_NUMERIC_TOWER = re.compile(r"(\d+(?:\.\d+)?)\s*\^")
_FACTORIAL = re.compile(r"(\d+)\s*!")


def check_complexity(latex: str) -> str | None:
    """Why ``latex`` is too pathological to hand to sympy, or None when it is fine.

    Rejects: more than :data:`MAX_ANSWER_CHARS` characters, bracket nesting deeper than
    :data:`MAX_NESTING`, numeric power towers whose value would have more than
    :data:`MAX_RESULT_DIGITS` digits (``9^{9^{9}}``), and factorials of huge integers.
    """
    if len(latex) > MAX_ANSWER_CHARS:
        return f"answer too long ({len(latex)} characters > {MAX_ANSWER_CHARS})"
    depth = 0
    for c in latex:
        if c in _OPEN:
            depth += 1
            if depth > MAX_NESTING:
                return f"answer nested too deeply (> {MAX_NESTING} brackets)"
        elif c in ")]}":
            depth = max(0, depth - 1)
    compact = re.sub(r"\s+|\\left|\\right", "", latex)
    for m in _NUMERIC_TOWER.finditer(compact):
        digits = _tower_log10(compact, m.start())
        if digits is not None and digits > MAX_RESULT_DIGITS:
            return "number too large (power tower)"
    for m in _FACTORIAL.finditer(compact):
        if len(m.group(1)) > 6 or int(m.group(1)) > MAX_FACTORIAL:
            return "number too large (factorial)"
    return None


def _tower_log10(s: str, i: int) -> float | None:
    """log10 of the numeric power tower starting at ``s[i]`` (``9^{9^9}``, ``2^10``), or None
    when the exponent is not purely numeric (then sympy keeps it symbolic: no blow-up)."""
    value, end = _parse_tower(s, i, 0)
    if value is None:
        return None
    return value


def _parse_tower(s: str, i: int, level: int) -> tuple[float | None, int]:
    """Parse NUMBER ('^' (DIGIT | '{' tower '}'))? at ``s[i]``; returns (log10 value, end)."""
    if level > 50:
        return math.inf, i
    m = re.compile(r"\d+(?:\.\d+)?").match(s, i)
    if m is None:
        return None, i
    base = float(m.group(0)) if len(m.group(0)) < 300 else 1e300
    j = m.end()
    if j >= len(s) or s[j] != "^":
        return (math.log10(base) if base > 0 else 0.0), j
    j += 1
    if j < len(s) and s[j] == "{":
        exp_log, k = _parse_tower(s, j + 1, level + 1)
        if exp_log is None or k >= len(s) or s[k] != "}":
            return None, j
        k += 1
    elif j < len(s) and s[j].isdigit():
        exp_log, k = math.log10(int(s[j])) if s[j] != "0" else -math.inf, j + 1
        if k < len(s) and s[k] == "^":  # 9^9^9: a chain without braces
            rest, k = _parse_tower(s, j, level + 1)
            exp_log = rest
    else:
        return None, j
    if base <= 1:
        return 0.0, k
    if exp_log is None:
        return None, k
    if exp_log > 300:
        return math.inf, k
    return (10 ** exp_log) * math.log10(base), k


# ---------------------------------------------------------------------------------------------
# Helper processes


def worker_function(fn: Callable) -> Callable:
    """Mark a module-level function as callable in a helper via :func:`run_bounded`."""
    fn.__ssb_worker__ = True  # type: ignore[attr-defined]
    return fn


class _Spawner:
    """Starts helper processes from one long-lived thread.

    Why a thread of its own: Linux sends the parent-death signal (set by each helper, see
    :func:`_die_with_parent`) when the *thread* that forked the helper exits, not the process,
    and :func:`verify_batch` calls the pool from short-lived executor threads: a helper forked
    there would be killed at the end of every batch.
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
        env = dict(os.environ)
        env[_WORKER_ENV] = "1"
        env[_PARENT_ENV] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        self._stderr = tempfile.TemporaryFile()
        self.proc = _spawn(lambda: subprocess.Popen(
            [sys.executable, "-c", "from ssb.verification import _worker_main; _worker_main()",
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


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent (thread) exits; False where it can't."""
    if not sys.platform.startswith("linux") or os.environ.get(_PDEATHSIG_ENV) == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError, ValueError):
        return False


def _die_with_parent() -> None:
    """Make sure this helper does not outlive the process that started it.

    A helper busy in sympy would otherwise run on at full CPU, adopted by PID 1, after its
    parent is SIGKILLed (it only notices EOF on stdin between requests).  Two layers:

    * Linux: the kernel SIGKILLs us when the parent dies (``PR_SET_PDEATHSIG``), even in the
      middle of a C-level big-integer power that holds the GIL;
    * everywhere: a daemon thread polls the parent pid and exits the process when it changes
      (runs whenever the GIL is released, i.e. between bytecodes of pure-Python sympy work).

    Checked once right after arming the signal: a parent that died before that moment would
    never send it.
    """
    try:
        parent = int(os.environ.get(_PARENT_ENV, "0"))
    except ValueError:
        parent = 0
    _set_parent_death_signal()
    if not parent:
        return
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="ssb-verify-parent-watch", daemon=True).start()


def _worker_main() -> None:
    """The helper's loop: one JSON request per line on stdin, one JSON reply per line."""
    os.environ[_WORKER_ENV] = "1"
    _die_with_parent()
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


# ---------------------------------------------------------------------------------------------
# math-verify, run inside a helper


@worker_function
def math_verify_equal(gold: str, answer: str) -> bool:
    """math-verify equivalence of two LaTeX strings (no timeouts of its own: run it bounded).

    Both are wrapped in ``\\boxed{}`` so that a bare gold such as ``\\frac12`` parses (math-verify
    finds nothing in unwrapped LaTeX and silently says False).  ``gold`` is passed as gold:
    math-verify is asymmetric (``x=5`` answers a gold ``5``).
    """
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0)]

    def _parse(s: str) -> list:
        parsed = parse("\\boxed{" + s + "}", extraction_config=config, parsing_timeout=None)
        if not parsed:
            parsed = parse("$" + s + "$", extraction_config=config, parsing_timeout=None)
        return parsed

    g, a = _parse(gold), _parse(answer)
    if not g or not a:
        return False
    return bool(verify(g, a, timeout_seconds=None))


def latex_equal(gold: str, answer: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> Verdict:
    """Bounded math-verify equivalence as a Verdict (``extracted`` = ``answer``).

    Pathological input is rejected in-process (``error`` says why); an overrun gives
    ``error="timeout"``.  Never raises for bad model text.
    """
    reason = check_complexity(answer) or check_complexity(gold)
    if reason is not None:
        return Verdict(extracted=answer, correct=False, error=f"rejected: {reason}")
    try:
        ok = run_bounded(math_verify_equal, gold, answer, timeout=timeout)
    except VerificationTimeout:
        return Verdict(extracted=answer, correct=False, error="timeout")
    except WorkerError as exc:
        return Verdict(extracted=answer, correct=False, error=f"error: {exc}"[:300])
    return Verdict(extracted=answer, correct=bool(ok))


# ---------------------------------------------------------------------------------------------
# Batches


def _verify_kwargs(verifier: Any, timeout: float | None, strict: bool) -> dict[str, Any]:
    """The optional keywords this verifier's ``verify`` accepts (third-party ones may take none)."""
    try:
        params = inspect.signature(verifier.verify).parameters
    except (TypeError, ValueError):
        return {}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    if accepts_any or "timeout" in params:
        kwargs["timeout"] = timeout
    if strict and (accepts_any or "strict" in params):
        kwargs["strict"] = True
    return kwargs


def verify_one(domain: str, response: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT,
               strict: bool = False) -> Verdict:
    """Verify one response in this process (the sympy step bounded in a helper)."""
    from ssb.plugins import get_registry

    verifier = get_registry().verifier(domain)
    try:
        verdict = verifier.verify(response, gold, **_verify_kwargs(verifier, timeout, strict))
    except Exception as exc:  # noqa: BLE001 - a verifier bug must not kill a batch
        return Verdict(extracted=None, correct=False, error=f"error: {type(exc).__name__}: {exc}"[:300])
    if not isinstance(verdict, Verdict):
        verdict = Verdict.from_dict(verdict) if isinstance(verdict, dict) else Verdict(
            extracted=None, correct=bool(verdict))
    return verdict


@worker_function
def _verify_in_worker(domain: str, response: str, gold: str, timeout: float | None,
                      strict: bool) -> dict:
    return verify_one(domain, response, gold, timeout=timeout, strict=strict).to_dict()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None, n_items: int) -> int:
    """The helper count ``verify_batch`` uses: ``None`` (auto) is one helper per available
    core, except for a single item, which runs in-process (no helper start-up when the cheap
    checks decide it).  Measured on 2 cores: 449 math answers/s with 2 helpers vs 177/s
    in-process (benchmarks/bench_verify.py)."""
    if workers is None:
        return 0 if n_items <= 1 else available_cores()
    if workers < 0:
        from ssb.errors import SsbError

        raise SsbError(f"--workers must be >= 0, got {workers}")
    return workers


def verify_batch(domain: str, items: Sequence[tuple[str, str]], *, workers: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT, strict: bool = False,
                 progress: Callable[[int], None] | None = None) -> list[Verdict]:
    """Verdicts for ``(response, gold)`` pairs, in order; each bounded by ``timeout`` seconds.

    ``workers=None`` (default): auto, one helper per available core (see :func:`resolve_workers`).
    ``workers=0``: the domain's verifier runs in this process (its sympy step in one helper).
    ``workers=N``: each whole verification runs in one of N helper processes; an item that
    overruns gives ``Verdict(correct=False, error="timeout")`` and its helper is replaced.
    ``strict``: boxed answers only (no "the answer is"/last-number fallbacks).
    Safe to call from any thread.
    """
    from ssb.plugins import get_registry

    get_registry().verifier(domain)  # unknown domain: fail early with the known ones listed
    items = list(items)
    if not items:
        return []

    workers = resolve_workers(workers, len(items))

    def tick() -> None:
        if progress is not None:
            progress(1)

    if workers == 0:
        out = []
        for response, gold in items:
            out.append(verify_one(domain, response, gold, timeout=timeout, strict=strict))
            tick()
        return out

    pool = get_pool(workers)

    def one(item: tuple[str, str]) -> Verdict:
        response, gold = item
        try:
            data = pool.call(_ref(_verify_in_worker), [domain, response, gold, timeout, strict],
                             timeout)
            verdict = Verdict.from_dict(data)
        except VerificationTimeout:
            verdict = Verdict(extracted=None, correct=False, error="timeout")
        except WorkerError as exc:
            verdict = Verdict(extracted=None, correct=False, error=f"error: {exc}"[:300])
        tick()
        return verdict

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ssb-verify") as ex:
        return list(ex.map(one, items))
