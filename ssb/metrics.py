"""Evaluation statistics as pure functions: accuracy with a confidence interval, avg@n, maj@n,
the unbiased pass@k estimator, and paired tests for comparing two runs on the same problems.

Conventions (also written into every ``summary.json``):

- A 95% interval for a proportion of *binary* outcomes (greedy, one sample per problem) is the
  Wilson score interval: unlike the normal approximation it stays inside [0, 1] and keeps close
  to nominal coverage at small n and at accuracies near 0 or 1 (AIME has 30 problems).
- With several samples per problem the samples are not independent (they share a problem), so
  the interval of avg@n is a percentile bootstrap over *problems*, not over samples.
- pass@k is the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)``, computed as
  a product of ratios so it neither overflows nor loses precision at large n.
- Two runs are compared *paired*, on the problems they share: a percentile bootstrap of the mean
  per-problem difference, and (for binary outcomes) the exact two-sided McNemar test, computed in
  integers.
- Bootstraps take O(resamples + n) memory at any n: data with few distinct values (0/1 outcomes
  and their -1/0/+1 differences) is resampled by one multinomial draw per resample, other data
  in bounded chunks of indices; ``resamples`` is at most :data:`MAX_RESAMPLES`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Hashable, Sequence

import numpy as np

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


# -- single run ---------------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (``(0, 1)`` when ``n == 0``)."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0/n and n/n the bound is exactly 0 or 1; elsewhere clamp floating-point spill.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def bootstrap_mean_interval(values: Sequence[float], *, confidence: float = 0.95,
                            resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (0.0, 1.0)
    means = bootstrap_means(x, resamples, np.random.default_rng(seed))
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return (float(lo), float(hi))


# Bootstrap memory stays bounded whatever n is: at most this many resample indices at a time
# (8 MB of int64), and few-valued data never draws indices at all.
BOOTSTRAP_CHUNK = 1 << 20
MAX_RESAMPLES = 1_000_000  # 8 MB of means; more buys no precision a 95% interval can use
FEW_VALUES = 64  # up to this many distinct values, each resample is one multinomial draw


def check_resamples(resamples: int) -> int:
    """``resamples`` if it is a sane bootstrap size, else ValueError (a one-line message)."""
    if not isinstance(resamples, (int, np.integer)) or not 1 <= resamples <= MAX_RESAMPLES:
        raise ValueError(f"resamples must be an integer from 1 to {MAX_RESAMPLES:,}, "
                         f"got {resamples!r}")
    return int(resamples)


def bootstrap_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The means of ``resamples`` bootstrap resamples of ``x`` (1-D float array), in
    O(resamples + n) memory.

    A resample of n values drawn with replacement is, in distribution, the multinomial
    ``Mult(n, p)`` count of each distinct value v (p: their frequencies in ``x``), so its mean
    is ``counts @ v / n``.  Data with few distinct values (0/1 outcomes, whose paired
    differences take only -1, 0, +1, or per-problem scores over k samples) is resampled with
    one multinomial draw per resample; other data draws indices in chunks of at most
    :data:`BOOTSTRAP_CHUNK`.
    """
    resamples = check_resamples(resamples)
    n = x.size
    values, counts = np.unique(x, return_counts=True)
    if values.size <= FEW_VALUES:
        draws = rng.multinomial(n, counts / n, size=resamples)  # [resamples, distinct]
        if np.all(values == np.round(values)) and np.all(np.abs(values) <= 2 ** 20):
            # Integer values (the 0/1 case): exact integer sums, so a zero difference is 0.0.
            return (draws @ values.astype(np.int64)) / n
        return (draws @ values) / n
    out = np.empty(resamples, dtype=np.float64)
    per_chunk = max(1, BOOTSTRAP_CHUNK // n)
    for start in range(0, resamples, per_chunk):
        stop = min(resamples, start + per_chunk)
        if per_chunk == 1 and n > BOOTSTRAP_CHUNK:  # one resample larger than a chunk
            total = 0.0
            for lo in range(0, n, BOOTSTRAP_CHUNK):
                total += x[rng.integers(0, n, size=min(BOOTSTRAP_CHUNK, n - lo))].sum()
            out[start] = total / n
            continue
        out[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


@dataclass
class Accuracy:
    """A mean score with its 95% interval and how the interval was computed."""

    mean: float
    ci_low: float
    ci_high: float
    n: int  # problems
    ci_method: str  # "wilson" or "bootstrap-problems"

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(per_problem: Sequence[Sequence[bool]], *, seed: int = 0) -> Accuracy:
    """Mean correctness over problems (each problem weighted equally) with a 95% interval.

    ``per_problem[i]`` holds the correct flags of problem i's samples.  With exactly one sample
    per problem the interval is Wilson's; otherwise a bootstrap over problems.
    """
    scores = problem_scores(per_problem)
    n = len(scores)
    if n == 0:
        return Accuracy(0.0, 0.0, 1.0, 0, "wilson")
    mean = float(np.mean(scores))
    if all(len(flags) == 1 for flags in per_problem):
        lo, hi = wilson_interval(int(round(sum(scores))), n)
        return Accuracy(mean, lo, hi, n, "wilson")
    lo, hi = bootstrap_mean_interval(scores, seed=seed)
    return Accuracy(mean, lo, hi, n, "bootstrap-problems")


def problem_scores(per_problem: Sequence[Sequence[bool]]) -> list[float]:
    """Per-problem mean correctness (the fraction of its samples that are correct)."""
    out = []
    for i, flags in enumerate(per_problem):
        if len(flags) == 0:
            raise ValueError(f"problem {i} has no samples")
        out.append(sum(bool(f) for f in flags) / len(flags))
    return out


def avg_at_n(per_problem: Sequence[Sequence[bool]]) -> float:
    """avg@n: accuracy averaged over the n samples of each problem, then over problems."""
    scores = problem_scores(per_problem)
    return float(np.mean(scores)) if scores else 0.0


def majority_answer(answers: Sequence[Hashable | None]) -> int | None:
    """Index of the first sample holding the most common non-None answer (None if all None).

    Ties go to the answer that appeared first, so the vote is deterministic.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    for i, a in enumerate(answers):
        if a is not None and counts[a] == best:
            return i
    return None  # unreachable


def maj_at_n(answers: Sequence[Sequence[Hashable | None]],
             correct: Sequence[Sequence[bool]]) -> float:
    """maj@n: the fraction of problems whose majority-vote answer is correct.

    Answers are grouped by their extracted string (None, i.e. no answer, never votes); the vote's
    correctness is that of the first sample carrying the winning answer.  A problem where no
    sample produced an answer counts as wrong.
    """
    if len(answers) != len(correct):
        raise ValueError("answers and correct flags cover different numbers of problems")
    if not answers:
        return 0.0
    hits = 0
    for problem_answers, problem_correct in zip(answers, correct):
        if len(problem_answers) != len(problem_correct):
            raise ValueError("answers and correct flags differ in sample count")
        winner = majority_answer([normalize_vote(a) for a in problem_answers])
        if winner is not None and problem_correct[winner]:
            hits += 1
    return hits / len(answers)


def normalize_vote(answer: Hashable | None) -> Hashable | None:
    """Votes compare extracted answers after whitespace is removed (``"1, 2"`` == ``"1,2"``)."""
    if isinstance(answer, str):
        stripped = "".join(answer.split())
        return stripped or None
    return answer


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate from n samples of which c are correct (Chen et al., 2021).

    ``1 - C(n-c, k) / C(n, k)`` written as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which never
    forms the (huge) binomial coefficients.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_ladder(n: int) -> list[int]:
    """The k reported for n samples: 1 and every power of two up to n."""
    ks = [1]
    k = 2
    while k <= n:
        ks.append(k)
        k *= 2
    return ks


def mean_pass_at_k(per_problem: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems (each problem may have its own n >= k)."""
    if not per_problem:
        return 0.0
    return float(np.mean([pass_at_k(len(f), sum(bool(x) for x in f), k) for f in per_problem]))


# -- two runs, paired ---------------------------------------------------------------------------

def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs.

    ``a_only``: problems right in A and wrong in B; ``b_only``: the reverse.  Under H0 each
    discordant pair is a fair coin, so p = min(1, 2 * P(Binom(a_only + b_only, 1/2) <= min)).
    Computed in integers (``sum C(m, i)`` over ``2**m``, one correctly rounded division), so
    it is exact at any m: a p-value below the smallest float is 0.0, never a wrong digit.
    """
    if a_only < 0 or b_only < 0:
        raise ValueError("discordant counts must be >= 0")
    m = int(a_only) + int(b_only)
    if m == 0:
        return 1.0
    low = min(int(a_only), int(b_only))
    if 2 * low >= m:  # the tail holds at least half the mass: p = 1
        return 1.0
    # sum_{i<=low} C(m, i), each term from the last (C(m, i) = C(m, i-1) * (m-i+1) / i).
    term = tail = 1
    for i in range(1, low + 1):
        term = term * (m - i + 1) // i
        tail += term
    # 2 * tail / 2**m: Python's int / int is correctly rounded however large both are.
    return min(1.0, (2 * tail) / (1 << m))


@dataclass
class PairedComparison:
    """B minus A on shared problems: point estimate, bootstrap interval, McNemar, verdict."""

    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean_b - mean_a
    ci_low: float
    ci_high: float
    bootstrap_p: float  # two-sided bootstrap p-value of diff == 0
    mcnemar_p: float | None  # only for binary outcomes
    a_only: int | None  # problems A got right and B wrong (binary outcomes)
    b_only: int | None
    significant: bool
    alpha: float
    resamples: int = 10_000  # bootstrap resamples: p below 1/resamples is reported as such

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000,
                     seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Paired percentile bootstrap of ``mean(b) - mean(a)`` over problems.

    Returns ``(diff, ci_low, ci_high, p)`` where p is the two-sided bootstrap p-value: twice the
    share of resampled differences on the far side of zero (capped at 1; 1 when all are zero).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("paired samples must have the same length")
    if x.size == 0:
        raise ValueError("no shared problems to compare")
    d = y - x
    diff = float(d.mean())
    boot = bootstrap_means(d, resamples, np.random.default_rng(seed))
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    if np.all(boot == 0):
        p = 1.0
    else:
        p = float(min(1.0, 2.0 * min(np.mean(boot <= 0), np.mean(boot >= 0))))
    return diff, float(lo), float(hi), p


def compare_paired(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05,
                   resamples: int = 10_000, seed: int = 0) -> PairedComparison:
    """Compare per-problem scores of run B against run A (same problems, same order).

    The difference counts as significant only when the bootstrap interval excludes zero *and*,
    for binary outcomes, the exact McNemar test rejects at ``alpha``: when the two disagree the
    honest answer is "not established".
    """
    diff, lo, hi, p_boot = paired_bootstrap(a, b, resamples=resamples, seed=seed,
                                            confidence=1.0 - alpha)
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    binary = bool(np.all((x == 0.0) | (x == 1.0)) and np.all((y == 0.0) | (y == 1.0)))
    mc_p = a_only = b_only = None
    if binary:
        a_only = int(np.count_nonzero((x == 1.0) & (y == 0.0)))
        b_only = int(np.count_nonzero((x == 0.0) & (y == 1.0)))
        mc_p = mcnemar_exact(a_only, b_only)
    excludes_zero = lo > 0 or hi < 0
    significant = excludes_zero and (mc_p is None or mc_p < alpha)
    return PairedComparison(
        n=len(x), mean_a=float(x.mean()), mean_b=float(y.mean()), diff=diff,
        ci_low=lo, ci_high=hi, bootstrap_p=p_boot, mcnemar_p=mc_p, a_only=a_only,
        b_only=b_only, significant=significant, alpha=alpha, resamples=resamples,
    )


def describe_comparison(c: PairedComparison, name_a: str = "A", name_b: str = "B") -> str:
    """One sentence saying what the difference is and whether it could be noise."""
    pts = 100.0 * c.diff
    ci = f"{100 * (1 - c.alpha):.0f}% CI {100 * c.ci_low:+.1f} to {100 * c.ci_high:+.1f} points"
    # No resample crossing zero bounds p by the resample count, it does not make it 0.
    boot_p = f"<{1 / c.resamples:.2g}" if c.bootstrap_p == 0 else f"={c.bootstrap_p:.3g}"
    tests = f"paired bootstrap p{boot_p}"
    if c.mcnemar_p is not None:
        tests += f", exact McNemar p={c.mcnemar_p:.3g} ({c.a_only} vs {c.b_only} discordant)"
    if c.significant:
        direction = "better" if c.diff > 0 else "worse"
        return (f"{name_b} is {abs(pts):.1f} points {direction} than {name_a} on {c.n} shared "
                f"problems ({ci}; {tests}): significant at the {100 * (1 - c.alpha):.0f}% level.")
    return (f"{name_b} vs {name_a}: {pts:+.1f} points on {c.n} shared problems ({ci}; {tests}). "
            f"NOT significant: a difference this size on {c.n} problems is consistent with "
            f"noise.")
