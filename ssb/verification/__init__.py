"""Time-bounded answer verification, safe in any thread and in worker processes.

One job per module:

* :mod:`ssb.verification.guard`: :func:`check_complexity`, a cheap in-process guard that rejects
  pathological answers (huge, deeply nested, giant exponent towers or factorials) before any
  sympy work;
* :mod:`ssb.verification.pool`: a pool of killable helper processes; :func:`run_bounded` sends
  one call (JSON in, JSON out; never pickle) to an idle helper and waits at most ``timeout``
  seconds (an overrun kills and replaces the helper and raises :class:`VerificationTimeout`).
  Helpers die with the process that started them (:mod:`ssb.processes`);
* :mod:`ssb.verification.mathverify`: the math-verify wrapper, :func:`latex_equal`, run in a
  helper after the guard;
* :mod:`ssb.verification.batch`: :func:`verify_batch`, ``(response, gold)`` pairs for a domain,
  each item with its own deadline.

Every name is importable from ``ssb.verification`` itself, as before the split.  Model text is
never evaluated: math-verify parses LaTeX into sympy objects without ``eval``.
"""

from __future__ import annotations

from ssb.verification.guard import (MAX_ANSWER_CHARS, MAX_FACTORIAL, MAX_FUNCTION_ARG_DIGITS,
                                    MAX_LITERAL_DIGITS, MAX_NESTING, MAX_RESULT_DIGITS,
                                    MAX_SYMBOLIC_EXPONENT, check_complexity)
from ssb.verification.pool import (DEFAULT_TIMEOUT, HELPER_MARKER, STARTUP_TIMEOUT,
                                   WORKER_MEMORY_MB, VerificationTimeout, WorkerError, WorkerPool,
                                   get_pool, in_worker, run_bounded, shutdown_pool,
                                   worker_function)
from ssb.verification.mathverify import latex_equal, math_verify_equal
from ssb.verification.batch import available_cores, resolve_workers, verify_batch, verify_one

__all__ = ["DEFAULT_TIMEOUT", "HELPER_MARKER", "MAX_ANSWER_CHARS", "MAX_FACTORIAL",
           "MAX_FUNCTION_ARG_DIGITS", "MAX_LITERAL_DIGITS", "MAX_NESTING", "MAX_RESULT_DIGITS",
           "MAX_SYMBOLIC_EXPONENT", "STARTUP_TIMEOUT", "VerificationTimeout", "WORKER_MEMORY_MB",
           "WorkerError", "WorkerPool", "available_cores", "check_complexity", "get_pool",
           "in_worker", "latex_equal", "math_verify_equal", "resolve_workers", "run_bounded",
           "shutdown_pool", "verify_batch", "verify_one", "worker_function"]
