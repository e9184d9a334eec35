"""Power of the exact two-sided McNemar test (alpha 0.05) for a paired accuracy difference.

    python scripts/study_power.py --n 1319 600 --discordant 0.15 0.2 0.25 --diff 0.03 0.05 0.08

Exact: the number of discordant pairs D ~ Binomial(n, discordant share), and given D the pairs
won by the better arm ~ Binomial(D, (d + diff) / (2 d)); power = P(exact McNemar p < alpha).
The discordant share is an assumption (the arithmetic study saw 15-31%): the table shows a range.
"""

from __future__ import annotations

import argparse
import functools
import math


def _log_pmf(k: int, n: int, p: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


@functools.lru_cache(maxsize=None)
def _critical(d: int, alpha: float) -> int:
    """Largest k with exact two-sided McNemar p(min(b, D - b) = k) < alpha (-1: none)."""
    k, tail = -1, 0.0
    for i in range(d + 1):
        tail += math.exp(_log_pmf(i, d, 0.5))
        if 2 * tail < alpha:
            k = i
        else:
            break
    return k


def power(n: int, discordant: float, diff: float, alpha: float = 0.05) -> float:
    win = (discordant + diff) / (2 * discordant)
    mu, sd = n * discordant, math.sqrt(n * discordant * (1 - discordant))
    total = 0.0
    for d in range(max(1, int(mu - 8 * sd)), min(n, int(mu + 8 * sd)) + 1):
        k = _critical(d, alpha)
        if k < 0:
            continue
        reject = sum(math.exp(_log_pmf(b, d, win)) for b in range(k + 1))
        reject += sum(math.exp(_log_pmf(b, d, win)) for b in range(d - k, d + 1))
        total += math.exp(_log_pmf(d, n, discordant)) * reject
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", required=True, help="paired problems")
    ap.add_argument("--discordant", type=float, nargs="+", default=[0.15, 0.2, 0.25])
    ap.add_argument("--diff", type=float, nargs="+", default=[0.03, 0.05, 0.08])
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args()
    print("| n | discordant | " + " | ".join(f"{100 * d:g} pts" for d in args.diff) + " |")
    print("|---|---|" + "---|" * len(args.diff))
    for n in args.n:
        for disc in args.discordant:
            row = [f"{power(n, disc, d, args.alpha):.2f}" for d in args.diff]
            print(f"| {n} | {100 * disc:g}% | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
