"""Verification throughput at the default settings, and a batch of hostile answers.

* ``math`` / ``gsm8k`` answers/s with ``verify_batch``'s defaults (one helper process per core)
  vs the old default, in-process (``--workers 0``), on the same items in the same run.
  Responses are the real golds (MATH-500, GSM8K test) written as model-style text, half of them
  perturbed to be wrong, so both the cheap paths and math-verify are exercised.  Helper
  start-up is paid before timing (a curate or eval run keeps its helpers for all batches).
* ``math`` answers/s vs a reference-style grading loop: ``math_verify.parse`` + ``verify``
  per answer in one process, as a plain math-verify grader does.
* hostile batch rows/s: 200 answers built to make sympy hang (huge factorials, power towers in
  many spellings, 1 MB strings, deep nesting, huge digit counts), at the default settings, vs
  the same machinery without the cheap guard (extraction, then math-verify in a killable helper
  with the same 5 s deadline), measured on an evenly spaced sample of the batch.

    .venv/bin/python benchmarks/bench_verify.py [--quick] [--json PATH]
    .venv/bin/python -m benchmarks verify [--quick]
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SSB_SHARED_DATA", REPO.parent / "shared" / "data"))

NAME = "verify"
DESCRIPTION = ("verification answers/s at the default settings vs the old in-process default "
               "and a plain math-verify loop; hostile batch rows/s with vs without the guard")

HOSTILE_ROWS = 200
MB = 1 << 20


def items_for(domain: str, n: int) -> list[tuple[str, str]]:
    if domain == "math":
        golds = [json.loads(line)["answer"] for line in open(DATA / "math500" / "test.jsonl")]
        wrong = lambda g: g + "+1"  # noqa: E731 - a different expression, forces math-verify
        resp = lambda a: f"Therefore the answer is $\\boxed{{{a}}}$."  # noqa: E731
    else:
        golds = [json.loads(line)["answer"].rsplit("####", 1)[1].strip().replace(",", "")
                 for line in open(DATA / "gsm8k" / "test.jsonl")]
        wrong = lambda g: str(int(float(g)) + 1)  # noqa: E731
        resp = lambda a: f"She earns {a} dollars, so the answer is \\boxed{{\\${a}.00}}."  # noqa: E731
    golds = (golds * (n // len(golds) + 1))[:n]
    return [(resp(g if i % 2 == 0 else wrong(g)), g) for i, g in enumerate(golds)]


def hostile_answers() -> list[str]:
    """Final answers that each cost sympy seconds to hours (measured before the guard knew them)."""
    d = 39  # just under the old bracket-depth limit (40)
    factorials = [
        "100000!", "(10^{9})!", "10^{9}!", "9!!!!", "(5000!)!", r"\left(100!\right)!", "(2^{64})!",
        r"\Gamma(10^{9})", r"\binom{10^{9}}{10^{8}}", r"{10^{9} \choose 5 \cdot 10^{8}}",
        r"\frac{10^{6}!}{2}", "99999!", "(99999)!", "((3!)!)!!", "20!!!", "(1000000)!",
        r"\frac{(10^{7})!}{(10^{7}-1)!}", "(100)!^{100!}", r"\Gamma(10^{9}+1)", "123456!",
        r"\binom{10^{6}}{5\cdot10^{5}}", "1000000!+1", "{(2^{30})}!",
    ]
    towers = [
        "9^{9^{9}}", "9^9^9", "(9^9)^{9^9}", "{9^{9}}^{9^{9}}", "2^{-10^{9}}", "3^{10^{9}}",
        "10^{10^{10}}", "(10^{10})^{10^{10}}", r"\left(99\right)^{99^{99}}", "2^{2^{2^{2^{2^{2}}}}}",
        "e^{e^{e^{e^{10}}}}", "(x+1)^{10^{6}}", "0.5^{10^{9}}", r"\sqrt{2}^{10^{9}}",
        "2^{3^{4^{5}}}", "2^{20!}", "(1+1)^{10^{9}}", "2^{(10^{9})}", r"2^{\left(10^{9}\right)}",
        "2^{1000000000}", "7^{123456789}", "{2}^{{10}^{9}}", "2^{10^9}", "(-3)^{10^{9}}",
        r"\left(\frac{3}{2}\right)^{10^{9}}", r"\frac{1}{3^{10^{9}}}", "3^{3^{3^{3}}}",
        "1.5^{10^{10}}", "(2^{100})^{2^{100}}", "(x+y)^{100000}", "(x+1)^{1000}",
        r"\sqrt[10^{9}]{2}^{10^{18}}", r"\sin(10^{99999})", r"\cos(2^{99999})",
        r"\log(10^{10^{5}})", "e^{10^{99999}}", r"\sin(x)^{200}", "2^{1{,}000{,}000{,}000}",
    ]
    digits = [
        "1" * 999, "9" * 999 + "^2", "1." + "3" * 900, "0." + "0" * 900 + "1",
        "9" * 500 + r"\cdot" + "9" * 480, r"\sqrt{" + "9" * 990 + "}", "1" + "0" * 990 + "!",
        "10^{99999}", "9^{99999}", "2^{332190}", r"\frac{10^{99999}}{3}",
    ]
    nesting = [
        r"\frac{" * d + "1" + "}{2}" * d, "(" * d + "1" + ")" * d, r"\sqrt{" * d + "2" + "}" * d,
        "-(" * d + "1" + ")" * d, "1^{" * d + "1" + "}" * d, r"\left(" * d + "x" + r"\right)" * d,
        "2^{" * d + "1" + "}" * d, "{" * d + "1" + "}" * d, r"\frac{1}{" * d + "x" + "}" * d,
        r"\sin(" * d + "1" + ")" * d, "(x+" * d + "1" + ")" * d, "[" * d + "1" + "]" * d,
        "(" * d + "2" + ")^{2}" * d, r"\ln(" * d + "2" + ")" * d, "e^{" * d + "1" + "}" * d,
        "(" * 12 + "1" + ")" * 12, "{" * 12 + "1" + "}" * 12, "(" * 5000 + ")" * 5000,
    ]
    return factorials + towers + digits + nesting


def hostile_responses() -> list[str]:
    """Whole responses: the answers above in three phrasings, plus 1 MB strings."""
    phrasings = ["The answer is $\\boxed{{{}}}$.", "So we get \\boxed{{{}}}",
                 "Final Answer: The final answer is ${}$. I hope it is correct."]
    out = [phrasings[i % 3].format(a) for i, a in enumerate(hostile_answers())]
    rng = random.Random(0)
    words = "".join(rng.choice("abcdefghij +-=^{}()") for _ in range(MB))
    out += [
        words + r" so \boxed{5}", r"\boxed{" + "1" * MB + "}", "x+" * (MB // 2), "{" * MB,
        r"\boxed{" + "{" * (MB - 8) + "}", "1" * MB, r"\frac{1}{2}" * (MB // 11),
        "The answer is " + "9" * MB + ".", r"\boxed{" + "(" * (MB // 2) + ")" * (MB // 2) + "}",
        r"\boxed{2^{" * 10000 + "}" * 10000, "\\" * MB, "$" * MB, r"\boxed{x}" * (MB // 9),
        r"\boxed{" + "9^{" * 20000 + "9" + "}" * 20000 + "}",
    ]
    return out


def hostile_rows(n: int = HOSTILE_ROWS) -> list[tuple[str, str]]:
    responses = hostile_responses()
    golds = ["5", r"\frac{1}{2}", "2^{10}", r"\sqrt{2}", "120"]
    return [(responses[i % len(responses)], golds[i % len(golds)]) for i in range(n)]


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _cpu_seconds() -> float | None:
    """CPU time of this process plus its live verification helpers (Linux), so that a mode's
    cost per answer can be compared on a shared box where wall-clock rates are squeezed."""
    import resource

    from ssb.verification import HELPER_MARKER

    if not os.path.isdir("/proc"):
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    tag = f"SSB_VERIFY_PARENT={os.getpid()}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if HELPER_MARKER.encode() not in Path(f"/proc/{entry}/cmdline").read_bytes():
                continue
            if tag not in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                continue
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def reference_loop(items: list[tuple[str, str]]) -> int:
    """A plain math-verify grader: parse the response and the gold, verify, one at a time in
    this process, with math-verify's own (signal-based) default timeouts."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    correct = 0
    for response, gold in items:
        try:
            correct += bool(verify(parse("$" + gold + "$"), parse(response)))
        except Exception:  # noqa: BLE001 - a grader loop counts a crash as wrong
            pass
    return correct


def no_guard(items: list[tuple[str, str]], workers: int, timeout: float) -> list[str]:
    """The hostile batch without the cheap guard: extraction, then math-verify in a killable
    helper (the same pool and deadline as ours).  Returns each row's outcome."""
    from ssb.plugins import get_registry
    from ssb.verification import (VerificationTimeout, WorkerError, get_pool,
                                  math_verify_equal, run_bounded)

    verifier = get_registry().verifier("math")
    get_pool(workers)

    def one(item: tuple[str, str]) -> str:
        response, gold = item
        answer = verifier.extract(response)
        if answer is None:
            return "no answer"
        try:
            run_bounded(math_verify_equal, gold, answer, timeout=timeout)
            return "compared"
        except VerificationTimeout:
            return "timeout"
        except WorkerError:
            return "helper error"

    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(one, items))


def _outcomes(verdicts) -> str:
    rejected = sum(1 for v in verdicts if v.error and v.error.startswith("rejected"))
    timeouts = sum(1 for v in verdicts if v.error == "timeout")
    return f"{rejected} rejected by the guard, {timeouts} timed out"


def run(quick: bool) -> list[dict]:
    from ssb.verification import (DEFAULT_TIMEOUT, available_cores, latex_equal,
                                  resolve_workers, shutdown_pool, verify_batch)

    n = 200 if quick else 1000
    rounds = 3 if quick else 5
    sample_size = 10 if quick else 40
    cores = available_cores()
    auto = resolve_workers(None, n)
    rows: list[dict] = []
    try:
        # Start the helpers of both modes before timing: in-process mode's one sympy helper,
        # and the default's one per core.
        latex_equal("1", "1")
        verify_batch("math", [("\\boxed{1}", "1")] * (2 * auto))

        for domain in ("math", "gsm8k"):
            items = items_for(domain, n)
            rates: dict[str, list[float]] = {"base": [], "ours": [], "helpers": []}
            cpu: dict[str, list[float]] = {"base": [], "ours": [], "helpers": []}
            correct: dict[str, int] = {}
            modes = {"base": 0, "ours": None, "helpers": auto}
            for _ in range(rounds):  # alternate, so that a neighbour's burst hits all modes
                for key, workers in modes.items():
                    c0 = _cpu_seconds()
                    t, verdicts = _timed(lambda: verify_batch(domain, items, workers=workers))
                    c1 = _cpu_seconds()
                    rates[key].append(n / t)
                    if c0 is not None and c1 is not None:
                        cpu[key].append(1000 * (c1 - c0) / n)
                    correct[key] = sum(v.correct for v in verdicts)
            ours, base, helpers = (statistics.median(rates[k]) for k in ("ours", "base", "helpers"))
            agree = f"correct {correct['ours']}/{correct['base']}/{correct['helpers']} (must agree)"
            if cpu["ours"] and cpu["base"]:
                ms = {k: statistics.median(v) for k, v in cpu.items()}
                agree += (f"; CPU ms/answer (this process + helpers): ours {ms['ours']:.2f}, "
                          f"baseline {ms['base']:.2f}, --workers {auto} {ms['helpers']:.2f}, "
                          f"i.e. at most {cores * 1000 / ms['ours']:.0f}/s on {cores} idle "
                          f"cores")
            rows.append({
                "metric": f"{domain} answers/s, default settings",
                "ours": ours, "baseline": base, "ratio": ours / base,
                "unit": "answers/s", "higher_is_better": True,
                "target": 400 if domain == "math" else None,
                "note": (f"baseline: the old default, in-process one at a time (--workers 0); "
                         f"ours: {auto} threads here + {auto} sympy helpers on {cores} cores; "
                         f"{n} answers, median of {rounds}; {agree}"
                         + ("; target set for 2 cores" if domain == "math" else "")),
            })
            rows.append({
                "metric": f"{domain} answers/s, --workers {auto} (whole verification in helpers)",
                "ours": helpers, "baseline": base, "ratio": helpers / base,
                "unit": "answers/s", "higher_is_better": True,
                "note": "baseline: --workers 0; shows why the default keeps cheap checks here",
            })
            if domain == "math":
                t_ref, ref_correct = _timed(lambda: reference_loop(items))
                rows.append({
                    "metric": "math answers/s, default vs a plain math-verify loop",
                    "ours": ours, "baseline": n / t_ref, "ratio": ours / (n / t_ref),
                    "unit": "answers/s", "higher_is_better": True,
                    "note": (f"baseline: math_verify parse+verify per answer, one process "
                             f"(reference-style grader); it counts {ref_correct} correct, "
                             f"ours {correct['ours']}"),
                })

        hostile = hostile_rows()
        t, verdicts = _timed(lambda: verify_batch("math", hostile))
        ours_rate = len(hostile) / t
        step = max(1, len(hostile) // sample_size)
        sample = hostile[::step][:sample_size]
        t_base, outcomes = _timed(lambda: no_guard(sample, auto, DEFAULT_TIMEOUT))
        base_rate = len(sample) / t_base
        rows.append({
            "metric": f"hostile batch rows/s ({len(hostile)} rows)",
            "ours": ours_rate, "baseline": base_rate, "ratio": ours_rate / base_rate,
            "unit": "rows/s", "higher_is_better": True, "target": 20,
            "note": (f"ours: default settings, {t:.1f} s, {_outcomes(verdicts)}, "
                     f"{sum(v.correct for v in verdicts)} correct; baseline: no guard, "
                     f"{DEFAULT_TIMEOUT:g} s deadline, every {step}th row "
                     f"({len(sample)} rows, {outcomes.count('timeout')} timed out)"),
        })
    finally:
        shutdown_pool()
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from benchmarks.harness import standalone

    sys.exit(standalone(sys.modules[__name__]))
