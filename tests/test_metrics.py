"""Evaluation statistics against values computed by hand (or with exact integer arithmetic)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from ssb import metrics


def test_wilson_interval_hand_values():
    # 8/10: p=.8, z=1.96: centre=(.8+z^2/20)/(1+z^2/10)=.7167, half=.2266 -> (.4902, .9433)
    lo, hi = metrics.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    # 0/10: lower bound exactly 0, upper z^2/(n+z^2) = 3.8415/13.8415 = .2775
    lo, hi = metrics.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = metrics.wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=1e-4)
    # 15/30 (an AIME-sized run at 50%): centre .5, half 1.96*sqrt(.25/30+z^2/3600)/(1+z^2/30)
    lo, hi = metrics.wilson_interval(15, 30)
    assert (lo, hi) == pytest.approx((0.3315, 0.6685), abs=1e-4)
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        metrics.wilson_interval(3, 2)


def test_accuracy_uses_wilson_for_one_sample_and_bootstrap_for_several():
    greedy = [[True]] * 8 + [[False]] * 2
    acc = metrics.accuracy(greedy)
    assert acc.mean == pytest.approx(0.8) and acc.n == 10 and acc.ci_method == "wilson"
    assert (acc.ci_low, acc.ci_high) == pytest.approx(metrics.wilson_interval(8, 10))

    sampled = [[True, True, False, False]] * 5 + [[True, False, False, False]] * 5
    acc = metrics.accuracy(sampled)
    assert acc.mean == pytest.approx((0.5 * 5 + 0.25 * 5) / 10)
    assert acc.ci_method == "bootstrap-problems"
    # Per-problem scores are .5 or .25, so every bootstrap mean lies in [.25, .5].
    assert 0.25 <= acc.ci_low <= acc.mean <= acc.ci_high <= 0.5


def test_avg_at_n_and_maj_at_n_hand_values():
    correct = [[True, True, False], [False, False, True], [False, False, False]]
    answers = [["72", " 72", "96"], ["1", None, "2"], [None, None, None]]
    # avg@3 = mean(2/3, 1/3, 0) = 1/3
    assert metrics.avg_at_n(correct) == pytest.approx(1 / 3)
    # problem 1: "72" (x2, whitespace ignored) wins -> right; problem 2: "1" and "2" tie, the
    # first seen ("1") wins -> wrong; problem 3: nobody answered -> wrong.  maj@3 = 1/3.
    assert metrics.maj_at_n(answers, correct) == pytest.approx(1 / 3)
    # Majority beats a lone right answer: 3 x "5" (wrong) vs 1 x "7" (right).
    assert metrics.maj_at_n([["5", "7", "5", "5"]], [[False, True, False, False]]) == 0.0
    assert metrics.majority_answer([None, "a", "b", "b"]) == 2
    assert metrics.majority_answer([None, None]) is None


@pytest.mark.parametrize("n,c,k,expected", [
    (4, 1, 2, Fraction(1, 2)),      # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (10, 3, 1, Fraction(3, 10)),    # pass@1 is c/n
    (10, 2, 4, Fraction(2, 3)),     # 1 - C(8,4)/C(10,4) = 1 - 70/210
    (5, 0, 3, Fraction(0)),
    (5, 4, 2, Fraction(1)),         # n-c < k: every k-subset has a correct one
    (16, 5, 8, 1 - Fraction(math.comb(11, 8), math.comb(16, 8))),
])
def test_pass_at_k_hand_values(n, c, k, expected):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(float(expected), rel=1e-12, abs=1e-15)


def test_pass_at_k_is_stable_at_large_n():
    # C(1000, 100) has 140 digits: the naive float formula overflows; the product form does not.
    exact = 1 - Fraction(math.comb(995, 100), math.comb(1000, 100))
    assert metrics.pass_at_k(1000, 5, 100) == pytest.approx(float(exact), rel=1e-12)
    with pytest.raises(ValueError):
        metrics.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        metrics.pass_at_k(4, 1, 5)
    assert metrics.pass_at_k_ladder(1) == [1]
    assert metrics.pass_at_k_ladder(8) == [1, 2, 4, 8]
    assert metrics.pass_at_k_ladder(12) == [1, 2, 4, 8]
    per_problem = [[True, False, False, False], [False] * 4]
    assert metrics.mean_pass_at_k(per_problem, 2) == pytest.approx((0.5 + 0.0) / 2)


def test_mcnemar_exact_hand_values():
    assert metrics.mcnemar_exact(0, 5) == pytest.approx(2 / 32)          # 2 * .5^5
    assert metrics.mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)   # 2*(C(10,0)+C(10,1))/2^10
    assert metrics.mcnemar_exact(9, 1) == metrics.mcnemar_exact(1, 9)
    assert metrics.mcnemar_exact(3, 3) == 1.0                             # capped
    assert metrics.mcnemar_exact(0, 0) == 1.0
    # 0 vs 20: 2 / 2^20
    assert metrics.mcnemar_exact(0, 20) == pytest.approx(2 / 2**20)


def test_paired_bootstrap_constant_difference_has_a_degenerate_interval():
    a = [0.0] * 10
    b = [1.0] * 10
    diff, lo, hi, p = metrics.paired_bootstrap(a, b, resamples=500)
    assert diff == lo == hi == 1.0 and p == 0.0
    diff, lo, hi, p = metrics.paired_bootstrap(a, a, resamples=500)
    assert diff == lo == hi == 0.0 and p == 1.0


def test_small_gain_on_aime_sized_set_is_not_significant():
    # 30 problems, A 10/30, B 11/30: a 3.3-point gain from 2 vs 3 discordant problems.
    a = [1.0] * 8 + [1.0, 1.0] + [0.0] * 3 + [0.0] * 17
    b = [1.0] * 8 + [0.0, 0.0] + [1.0] * 3 + [0.0] * 17
    c = metrics.compare_paired(a, b)
    assert c.diff == pytest.approx(1 / 30)
    assert (c.a_only, c.b_only) == (2, 3) and c.mcnemar_p == pytest.approx(1.0)
    assert c.ci_low < 0 < c.ci_high and not c.significant
    text = metrics.describe_comparison(c, "base", "ssb")
    assert "NOT significant" in text and "+3.3 points" in text and "noise" in text


def test_large_consistent_gain_is_significant():
    # 100 problems: B fixes 20 that A gets wrong and breaks none.
    a = [1.0] * 40 + [0.0] * 60
    b = [1.0] * 60 + [0.0] * 40
    c = metrics.compare_paired(a, b)
    assert c.diff == pytest.approx(0.2) and (c.a_only, c.b_only) == (0, 20)
    assert c.mcnemar_p == pytest.approx(2 / 2**20) and c.ci_low > 0 and c.significant
    assert "significant at the 95% level" in metrics.describe_comparison(c)
    assert c.bootstrap_p == 0 and "paired bootstrap p<0.0001" in metrics.describe_comparison(c)
    worse = metrics.compare_paired(b, a)
    assert worse.significant and worse.diff < 0
    assert "worse" in metrics.describe_comparison(worse)


def test_non_binary_scores_use_bootstrap_only():
    a = [0.25, 0.5, 0.0, 1.0] * 5
    b = [0.5, 0.5, 0.25, 1.0] * 5
    c = metrics.compare_paired(a, b)
    assert c.mcnemar_p is None and c.a_only is None
    assert c.diff == pytest.approx(0.125)
    assert c.ci_low > 0 and c.significant  # every problem's difference is >= 0


# -- statistics at any size ---------------------------------------------------------------------

def _exact_mcnemar(a_only: int, b_only: int) -> float:
    """The definition, in fractions: min(1, 2 * sum_{i<=min} C(m, i) / 2^m)."""
    m, low = a_only + b_only, min(a_only, b_only)
    return float(min(Fraction(1), Fraction(2 * sum(math.comb(m, i) for i in range(low + 1)),
                                            2 ** m)))


def test_mcnemar_exact_known_values_and_exact_at_large_m():
    # The textbook example: 10 vs 2 discordant, p = 2 * (1 + 12 + 66) / 4096 = 0.0386.
    assert metrics.mcnemar_exact(10, 2) == 158 / 4096
    assert round(metrics.mcnemar_exact(10, 2), 4) == 0.0386
    assert metrics.mcnemar_exact(1, 9) == 22 / 1024
    # Exact to the last bit (correctly rounded) where a log-space sum drifts, including p values
    # near the bottom of the float range.
    for a_only, b_only in [(40, 75), (480, 560), (2_450, 2_600), (450, 1_650)]:
        assert metrics.mcnemar_exact(a_only, b_only) == _exact_mcnemar(a_only, b_only), \
            (a_only, b_only)
    assert metrics.mcnemar_exact(0, 3_000) == 0.0  # 2^-2999 is below the smallest float
    assert metrics.mcnemar_exact(50_000, 50_000) == 1.0
    assert 0 < metrics.mcnemar_exact(49_000, 51_000) < 1e-9  # m = 10^5 in well under a second


def _index_bootstrap(d, resamples, seed):
    """The textbook (and the old) method: a resamples x n index array; for small n only."""
    import numpy as np

    d = np.asarray(d, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)


@pytest.mark.parametrize("kind", ["binary", "quarters", "continuous", "continuous-chunked"])
def test_bootstrap_draws_agree_with_index_resampling(kind, monkeypatch):
    """Same distribution as drawing indices: mean, spread and the 2.5/97.5% quantiles agree
    within Monte Carlo error (20,000 resamples each, independent seeds)."""
    import numpy as np

    rng = np.random.default_rng(7)
    n = 300
    if kind == "binary":  # paired differences of 0/1 outcomes: -1, 0, +1
        d = rng.integers(0, 2, n).astype(float) - (rng.random(n) < 0.35)
    elif kind == "quarters":  # 4 samples per problem: scores in quarters
        d = rng.integers(0, 5, n) / 4 - rng.integers(0, 5, n) / 4
    else:
        d = rng.normal(0.1, 1.0, n)
        if kind == "continuous-chunked":
            monkeypatch.setattr(metrics, "BOOTSTRAP_CHUNK", 1_000)  # 3 resamples per chunk
    new = metrics.bootstrap_means(np.asarray(d, dtype=float), 20_000, np.random.default_rng(1))
    old = _index_bootstrap(d, 20_000, seed=2)
    sd = old.std()
    assert new.shape == (20_000,)
    # The mean of 20,000 resample means has sd sd/141: allow 5 of those.
    assert abs(new.mean() - old.mean()) < 5 * sd / 141
    assert new.std() == pytest.approx(sd, rel=0.04)
    for q in (0.025, 0.975):
        assert abs(np.quantile(new, q) - np.quantile(old, q)) < 0.1 * sd
    # And the paired test built on it gives the same interval as the index method.
    zeros = np.zeros(n)
    _, lo, hi, _ = metrics.paired_bootstrap(zeros, d, resamples=20_000, seed=3)
    ref = np.quantile(old, [0.025, 0.975])
    assert abs(lo - ref[0]) < 0.1 * sd and abs(hi - ref[1]) < 0.1 * sd


def test_paired_comparison_at_n_100000_is_memory_bounded():
    """n = 10^5 problems, 10,000 resamples: an index array would be 8 GB; the multinomial draw
    (0/1 outcomes) and the chunked draw (any scores) stay within tens of MB."""
    import tracemalloc

    import numpy as np

    n = 100_000
    rng = np.random.default_rng(0)
    a = (rng.random(n) < 0.50).astype(float)
    b = np.where(rng.random(n) < 0.9, a, 1.0 - a)  # 10% discordant
    b[:600] = 1.0  # a small real gain
    tracemalloc.start()
    try:
        c = metrics.compare_paired(list(a), list(b), resamples=10_000)
        _, peak_binary = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        scores_a = rng.random(n)  # continuous scores: no few-valued shortcut
        _, lo, hi, _ = metrics.paired_bootstrap(scores_a, scores_a + 0.01, resamples=200)
        _, peak_general = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert c.n == n and c.diff == pytest.approx(float(np.mean(b) - np.mean(a)))
    assert c.a_only == int(np.sum((a == 1) & (b == 0)))
    assert c.mcnemar_p == _exact_mcnemar(c.a_only, c.b_only)
    half = 1.96 * np.std(b - a) / math.sqrt(n)  # the normal-theory half-width
    assert c.ci_low == pytest.approx(c.diff - half, abs=half / 10)
    assert c.ci_high == pytest.approx(c.diff + half, abs=half / 10)
    assert lo == pytest.approx(0.01) and hi == pytest.approx(0.01)
    # The inputs themselves are a few MB (two lists of 10^5 floats, their arrays).
    assert peak_binary < 40e6, f"peak {peak_binary / 1e6:.0f} MB"
    assert peak_general < 60e6, f"peak {peak_general / 1e6:.0f} MB"


def test_resamples_are_bounded():
    with pytest.raises(ValueError, match="resamples must be an integer from 1 to 1,000,000"):
        metrics.paired_bootstrap([0.0, 1.0], [1.0, 1.0], resamples=10**9)
    with pytest.raises(ValueError, match="resamples"):
        metrics.bootstrap_mean_interval([0.5, 0.25], resamples=0)


def test_eval_compare_refuses_absurd_resamples_in_one_line(ssb_cli, tmp_path):
    code, _, err = ssb_cli("eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"),
                           "--resamples", "1000000000000")
    assert code == 2 and "--resamples must be <= 1,000,000, got 1,000,000,000,000" in err
    assert "\n" not in err.strip()
    from ssb.commands.eval import CompareConfig

    # The flag's bound is written out (the CLI does not import numpy to start): the same number.
    assert CompareConfig.spec("resamples").bounds["le"] == metrics.MAX_RESAMPLES
