"""The batch driver: :func:`verify_batch` verifies ``(response, gold)`` pairs for a domain, each
item with its own deadline: by default on one thread per usable core here, the sympy steps spread
over as many helpers; or one at a time (``workers=0``); or whole verifications in ``workers``
helpers (:mod:`ssb.verification.pool`).
"""

from __future__ import annotations

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ssb.processes import usable_cores
from ssb.records import Verdict
from ssb.verification.pool import (DEFAULT_TIMEOUT, VerificationTimeout, WorkerError, _ref,
                                   get_pool, worker_function)

#: CPU cores this process may run on (its affinity mask where the OS has one).
available_cores = usable_cores


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


def resolve_workers(workers: int | None, n_items: int) -> int:
    """How many verifications ``verify_batch`` runs at once: ``None`` (auto) is one per
    available core, except for a single item (nothing to overlap); otherwise ``workers``."""
    if workers is None:
        return 0 if n_items <= 1 else available_cores()
    if workers < 0:
        from ssb.errors import SsbError

        raise SsbError(f"--workers must be >= 0, got {workers}")
    return workers


def _verify_threads(domain: str, items: list[tuple[str, str]], threads: int,
                    timeout: float, strict: bool, tick: Callable[[], None]) -> list[Verdict]:
    """``verify_one`` over ``items`` on ``threads`` threads of this process, the sympy steps in
    up to as many helpers.  Each thread takes the next item from a shared counter (one future
    per item would cost more than a GSM8K number comparison)."""
    get_pool(threads)
    out: list[Verdict | None] = [None] * len(items)
    position = iter(range(len(items)))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def lane() -> None:
        try:
            while not failures:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                out[i] = verify_one(domain, items[i][0], items[i][1], timeout=timeout,
                                    strict=strict)
                tick()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
            failures.append(exc)

    lanes = [threading.Thread(target=lane, name=f"ssb-verify-{k}", daemon=True)
             for k in range(min(threads, len(items)))]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    if failures:
        raise failures[0]
    return out  # type: ignore[return-value]


def verify_batch(domain: str, items: Sequence[tuple[str, str]], *, workers: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT, strict: bool = False,
                 progress: Callable[[int], None] | None = None) -> list[Verdict]:
    """Verdicts for ``(response, gold)`` pairs, in order; each bounded by ``timeout`` seconds.

    ``workers=None`` (default, auto): the domain's verifier runs in this process on one thread
    per available core, and its sympy steps in as many helper processes.  The cheap checks
    (number and string equality, the complexity guard) stay in-process, where they cost
    microseconds, while the symbolic work spreads over every core.  Measured with
    benchmarks/bench_verify.py (benchmarks/results/2026-11-28-verify.json, a shared 2-core box
    at load average 11-13): math costs the same CPU per answer as whole-verification helpers
    (2.8 ms, i.e. up to ~700 answers/s on 2 idle cores), and GSM8K, decided by a number
    comparison, runs at 0.9x the in-process rate where ``workers=2`` gives 0.2x (the round
    trip to a helper dwarfs the comparison).
    ``workers=0``: the verifier runs in this process, one item at a time (its sympy step in a
    helper).
    ``workers=N``: each whole verification runs in one of N helper processes, so a verifier
    that can hang outside sympy is bounded too; an item that overruns gives
    ``Verdict(correct=False, error="timeout")`` and its helper is replaced.
    ``strict``: boxed answers only (no "the answer is"/last-number fallbacks).
    Safe to call from any thread.
    """
    from ssb.plugins import get_registry

    get_registry().verifier(domain)  # unknown domain: fail early with the known ones listed
    items = list(items)
    if not items:
        return []

    auto = workers is None
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

    if auto:
        return _verify_threads(domain, items, workers, timeout, strict, tick)

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

__all__ = ["available_cores", "resolve_workers", "verify_batch", "verify_one"]
