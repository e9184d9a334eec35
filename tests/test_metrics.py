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
