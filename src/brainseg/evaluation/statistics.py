"""Paired comparison of two evaluations of the same subjects: is a difference real?

For one metric and region, subject i has the value a_i in evaluation A and b_i in B, and
the paired difference d_i = b_i - a_i. `compare_paired` reports the means of A and B, the
mean difference, a paired bootstrap confidence interval of it and a Wilcoxon signed-rank
p-value (definitions in docs/conventions.md, "Comparing two evaluations").

Non-finite values: a pair in which either value is NaN (not available, `n/a`) or
infinite is dropped, and counted in `n_dropped`; every statistic is over the pairs kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from brainseg.errors import BrainsegError

#: Two-sided confidence level of the bootstrap interval.
CONFIDENCE = 0.95


def bootstrap_mean_ci(diff: np.ndarray, n_boot: int = 10_000, seed: int = 0,
                      confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences.

    Each of `n_boot` replicates draws n subjects with replacement (the pair stays
    together: resampling the differences is resampling the subjects), and takes the
    mean of their differences. The interval is the (1 - confidence)/2 and
    (1 + confidence)/2 quantiles of the replicate means (linear interpolation).

    Args:
        diff: the differences b - a, shape (n,), all finite, n >= 1.
        n_boot: number of bootstrap replicates (>= 1).
        seed: seed of numpy's default generator (PCG64): the same inputs and seed give
            the same interval.
        confidence: the two-sided level, in (0, 1).

    Returns:
        (low, high); for n = 1 both are the one difference.

    Raises:
        BrainsegError: no difference, a non-finite one, or n_boot < 1.
    """
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim != 1 or not diff.size or not np.isfinite(diff).all():
        raise BrainsegError(f"bootstrap needs a 1-D array of finite differences, got {diff!r}")
    if n_boot < 1:
        raise BrainsegError(f"bootstrap replicates must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 1_000_000 // diff.size)  # bounded memory: chunk x n indices at a time
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, diff.size, size=(stop - start, diff.size))
        means[start:stop] = diff[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def wilcoxon_p(diff: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences.

    `scipy.stats.wilcoxon` with its defaults: zero differences are dropped ("wilcox"),
    the exact distribution is used for up to 50 non-zero differences without ties, the
    normal approximation otherwise. Edge cases, handled here: no difference at all gives
    None; all differences zero gives 1.0 (no sign of a difference).

    Note that with m non-zero differences the smallest two-sided p-value the exact test
    can reach is 2 / 2**m (`min_wilcoxon_p`): 0.0625 for m = 5.
    """
    diff = np.asarray(diff, dtype=np.float64)
    if not diff.size:
        return None
    if not np.any(diff):
        return 1.0
    from scipy import stats  # imported here: a second of start-up that --help need not pay

    return float(stats.wilcoxon(diff).pvalue)


def min_wilcoxon_p(n_nonzero: int) -> float | None:
    """The smallest two-sided p-value of the exact signed-rank test with `n_nonzero`
    non-zero differences (all of one sign): 2 / 2**n, at most 1; None for none."""
    return None if n_nonzero < 1 else min(1.0, 2.0 / 2.0 ** n_nonzero)


@dataclass(frozen=True)
class PairedComparison:
    """The paired statistics of one metric and region (None where nothing is left).

    Attributes:
        n: pairs kept (both values finite).
        n_dropped: pairs dropped for a NaN or infinite value in A or B.
        mean_a, mean_b: means of A and of B over the pairs kept.
        mean_diff: mean of b - a (equal to mean_b - mean_a).
        ci_low, ci_high: the paired bootstrap interval of mean_diff (`bootstrap_mean_ci`).
        p_wilcoxon: two-sided signed-rank p-value (`wilcoxon_p`).
        min_p: the smallest p the exact test could give with these pairs (`min_wilcoxon_p`).
        n_higher, n_lower: pairs with b > a, and with b < a.
    """

    n: int
    n_dropped: int
    mean_a: float | None
    mean_b: float | None
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_wilcoxon: float | None
    min_p: float | None
    n_higher: int
    n_lower: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def finite_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bool mask (n,) of the pairs whose two values are finite (the pairs kept)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise BrainsegError(f"paired values need two 1-D arrays of one length, got shapes "
                            f"{a.shape} and {b.shape}")
    return np.isfinite(a) & np.isfinite(b)


def compare_paired(a: np.ndarray, b: np.ndarray, n_boot: int = 10_000,
                   seed: int = 0) -> PairedComparison:
    """Paired statistics of B against A for one metric and region.

    Args:
        a, b: the values of A and B, shape (n,), subject i at index i in both.
        n_boot: bootstrap replicates.
        seed: bootstrap seed.

    Returns:
        The `PairedComparison` over the pairs with two finite values.

    Raises:
        BrainsegError: `a` and `b` differ in shape.
    """
    keep = finite_pairs(a, b)
    a = np.asarray(a, dtype=np.float64)[keep]
    b = np.asarray(b, dtype=np.float64)[keep]
    diff = b - a
    n_dropped = int((~keep).sum())
    if not diff.size:
        return PairedComparison(0, n_dropped, None, None, None, None, None, None, None, 0, 0)
    low, high = bootstrap_mean_ci(diff, n_boot, seed)
    nonzero = int(np.count_nonzero(diff))
    return PairedComparison(
        n=int(diff.size), n_dropped=n_dropped, mean_a=float(a.mean()), mean_b=float(b.mean()),
        mean_diff=float(diff.mean()), ci_low=low, ci_high=high, p_wilcoxon=wilcoxon_p(diff),
        min_p=min_wilcoxon_p(nonzero), n_higher=int((diff > 0).sum()),
        n_lower=int((diff < 0).sum()))
