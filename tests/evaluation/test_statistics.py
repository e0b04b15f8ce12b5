"""Paired statistics of two evaluations: bootstrap interval, Wilcoxon p, non-finite pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from brainseg.errors import BrainsegError
from brainseg.evaluation.statistics import (
    bootstrap_mean_ci,
    compare_paired,
    min_wilcoxon_p,
    wilcoxon_p,
)


def test_bootstrap_hand_computed_cases():
    # one pair, or equal differences: every replicate mean is that difference
    assert bootstrap_mean_ci(np.array([0.3]), 100) == (0.3, 0.3)
    assert bootstrap_mean_ci(np.full(7, -0.25), 100) == pytest.approx((-0.25, -0.25))
    # d = (-1, 1): a replicate mean is -1 (p 1/4), 0 (1/2) or 1 (1/4), so the 2.5% and
    # 97.5% quantiles of 10,000 replicates are -1 and 1
    assert bootstrap_mean_ci(np.array([-1.0, 1.0]), 10_000, seed=3) == (-1.0, 1.0)


def test_bootstrap_is_seeded_and_agrees_with_scipy():
    diff = np.random.default_rng(0).normal(0.02, 0.05, size=20)
    low, high = bootstrap_mean_ci(diff, 20_000, seed=1)
    assert (low, high) == bootstrap_mean_ci(diff, 20_000, seed=1)
    assert (low, high) != bootstrap_mean_ci(diff, 20_000, seed=2)
    assert low < diff.mean() < high
    ref = stats.bootstrap((diff,), np.mean, n_resamples=20_000, method="percentile",
                          confidence_level=0.95, rng=np.random.default_rng(9))
    width = high - low
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)
    # and about the normal-theory interval of a mean (t, n - 1)
    half = stats.t.ppf(0.975, diff.size - 1) * diff.std(ddof=1) / np.sqrt(diff.size)
    assert width == pytest.approx(2 * half, rel=0.15)


def test_bootstrap_refuses_what_it_cannot_use():
    for bad in (np.array([]), np.array([0.1, np.nan]), np.array([[0.1]])):
        with pytest.raises(BrainsegError, match="finite differences"):
            bootstrap_mean_ci(bad)
    with pytest.raises(BrainsegError, match=">= 1"):
        bootstrap_mean_ci(np.array([0.1]), n_boot=0)


def test_wilcoxon_hand_computed_exact_values():
    # all six positive: only 1 of the 2**6 sign patterns is as extreme on each side
    assert wilcoxon_p(np.arange(1, 7) / 10) == pytest.approx(2 / 64)
    # the smallest one negative: W- = 1, reached by 2 patterns (W- = 0 or 1) on each side
    assert wilcoxon_p(np.array([-1, 2, 3, 4, 5, 6]) / 10) == pytest.approx(4 / 64)
    # zeros are dropped (scipy's "wilcox"): three positive left
    assert wilcoxon_p(np.array([0.0, 0.1, 0.2, 0.3])) == pytest.approx(2 / 8)


def test_wilcoxon_edge_cases_and_scipy():
    assert wilcoxon_p(np.array([])) is None
    assert wilcoxon_p(np.zeros(5)) == 1.0
    diff = np.random.default_rng(1).normal(0.01, 0.05, size=28)
    assert wilcoxon_p(diff) == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert min_wilcoxon_p(0) is None
    assert min_wilcoxon_p(1) == 1.0
    assert min_wilcoxon_p(5) == pytest.approx(0.0625)


def test_compare_paired_drops_non_finite_pairs_and_counts_them():
    a = np.array([0.5, 0.6, 0.7, np.nan, 0.8, 10.0])
    b = np.array([0.6, 0.6, 0.9, 0.4, np.inf, 11.0])
    s = compare_paired(a, b, n_boot=500, seed=0)
    assert (s.n, s.n_dropped) == (4, 2)
    assert s.mean_a == pytest.approx(np.mean([0.5, 0.6, 0.7, 10.0]))
    assert s.mean_b == pytest.approx(np.mean([0.6, 0.6, 0.9, 11.0]))
    assert s.mean_diff == pytest.approx(s.mean_b - s.mean_a)
    assert (s.n_higher, s.n_lower) == (3, 0)
    assert s.p_wilcoxon == pytest.approx(stats.wilcoxon([0.1, 0.0, 0.2, 1.0]).pvalue)
    assert s.min_p == pytest.approx(2 / 8)
    assert s.ci_low <= s.mean_diff <= s.ci_high


def test_compare_paired_with_nothing_left_or_unequal_lengths():
    s = compare_paired(np.array([np.nan, 1.0]), np.array([0.5, np.nan]))
    assert (s.n, s.n_dropped, s.mean_diff, s.p_wilcoxon) == (0, 2, None, None)
    assert set(s.as_dict()) >= {"n", "mean_a", "mean_b", "ci_low", "ci_high", "p_wilcoxon"}
    with pytest.raises(BrainsegError, match="one length"):
        compare_paired(np.zeros(3), np.zeros(4))
