"""The math-verify wrapper: :func:`math_verify_equal` runs in a helper process, and
:func:`latex_equal` calls it there, bounded in time, after the cheap guard.

Model text is never evaluated: math-verify parses LaTeX into sympy objects without ``eval``.
"""

from __future__ import annotations

from ssb.answers import normalize_latex
from ssb.records import Verdict
from ssb.verification.guard import check_complexity
from ssb.verification.pool import (DEFAULT_TIMEOUT, VerificationTimeout, WorkerError, run_bounded,
                                   worker_function)


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

    Two answers that are the same string after :func:`ssb.answers.normalize_latex` are equal
    before anything else, however large (a guarded ``9^{9^{9^{9}}}`` against itself).  Other
    pathological input is rejected in-process (``error`` says why); an overrun gives
    ``error="timeout"``.  Never raises for bad model text.
    """
    same = normalize_latex(answer)
    if same and same == normalize_latex(gold):
        return Verdict(extracted=answer, correct=True)
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


__all__ = ["latex_equal", "math_verify_equal"]
