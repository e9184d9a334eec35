"""Verification throughput (answers/s) for the math and gsm8k domains, in-process vs helpers.

Responses are the real golds wrapped as model-style text, half of them perturbed to be wrong,
so both the fast paths and math-verify are exercised.  Helper start-up is paid before timing.

    .venv/bin/python benchmarks/bench_verify.py [--n 400] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ssb.verification import latex_equal, verify_batch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def items_for(domain: str, n: int) -> list[tuple[str, str]]:
    if domain == "math":
        golds = [json.loads(l)["answer"] for l in open(DATA / "math500" / "test.jsonl")]
        wrong = lambda g: g + "+1"  # noqa: E731 - a different expression, forces math-verify
        resp = lambda a: f"Therefore the answer is $\\boxed{{{a}}}$."  # noqa: E731
    else:
        golds = [json.loads(l)["answer"].rsplit("####", 1)[1].strip().replace(",", "")
                 for l in open(DATA / "gsm8k" / "test.jsonl")]
        wrong = lambda g: str(int(float(g)) + 1)  # noqa: E731
        resp = lambda a: f"She earns {a} dollars, so the answer is \\boxed{{\\${a}.00}}."  # noqa: E731
    golds = (golds * (n // len(golds) + 1))[:n]
    return [(resp(g if i % 2 == 0 else wrong(g)), g) for i, g in enumerate(golds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    latex_equal("1", "1")  # start the in-process mode's helper
    verify_batch("math", [("\\boxed{1}", "1")] * args.workers, workers=args.workers)  # warm

    table = Table(title=f"ssb verify throughput ({args.n} answers per row)")
    for col in ("domain", "mode", "seconds", "answers/s", "correct", "vs in-process"):
        table.add_column(col, justify="right")
    for domain in ("math", "gsm8k"):
        items = items_for(domain, args.n)
        base = None
        for label, workers in (("in-process", 0), (f"{args.workers} workers", args.workers)):
            start = time.perf_counter()
            verdicts = verify_batch(domain, items, workers=workers, timeout=10)
            seconds = time.perf_counter() - start
            rate = len(items) / seconds
            base = base or rate
            table.add_row(domain, label, f"{seconds:.2f}", f"{rate:.0f}",
                          f"{sum(v.correct for v in verdicts)}/{len(items)}",
                          f"{rate / base:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
