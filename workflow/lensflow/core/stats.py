"""Small statistics shared by both pipelines: Spearman with a bootstrap CI, mean CIs, and a
two-group mean comparison.

Seed scheme (so a plain loop can reproduce every bootstrap here): one
`np.random.default_rng(seed)`; resample indices are drawn all at once with
`rng.integers(0, n, size=(n_boot, n))`, row b being bootstrap sample b. For two groups the
indices of group a are drawn first, then those of group b, from the same generator.
Percentile intervals use np.percentile (linear interpolation) at (1-ci)/2 and (1+ci)/2.
"""

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass
class SpearmanResult:
    rho: float  # Spearman rho on all pairs (scipy.stats.spearmanr, average ranks for ties)
    p: float  # its two-sided p-value (scipy)
    ci_low: float  # percentile bootstrap interval over resampled pairs
    ci_high: float
    n: int  # number of pairs
    n_boot: int  # bootstrap resamples drawn
    n_boot_valid: int  # resamples with a defined rho (a constant resample has none)
    seed: int

    def as_dict(self):
        return asdict(self)


@dataclass
class MeanCI:
    mean: float
    ci_low: float  # t-based interval: mean -+ t_{(1+ci)/2, n-1} * sd / sqrt(n)
    ci_high: float
    n: int

    def as_dict(self):
        return asdict(self)


@dataclass
class MeanDiff:
    diff: float  # mean(a) - mean(b)
    ci_low: float  # percentile bootstrap interval, groups resampled independently
    ci_high: float
    p: float  # Welch t-test (scipy.stats.ttest_ind, equal_var=False), two-sided
    n_a: int
    n_b: int
    n_boot: int
    seed: int

    def as_dict(self):
        return asdict(self)


def _as_1d(v, name):
    v = np.asarray(v, dtype=np.float64).ravel()
    if np.isnan(v).any():
        raise ValueError(f"{name} contains NaN; drop or fill those entries first")
    return v


def percentile_ci(samples, ci):
    """Percentile interval of finite bootstrap samples [n_boot]; NaN if there are none."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return np.nan, np.nan
    lo, hi = np.percentile(samples, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def _rowwise_pearson(a, b):
    """Pearson r per row. a, b: [n_rows, n] ranks; returns [n_rows].

    A constant row of ranks is n copies of one half-integer, so its mean is exact, the centred
    row is exactly zero and r = 0/0 = NaN -- the undefined case comes out as NaN by itself.
    """
    a = a - a.mean(axis=1, keepdims=True)  # [n_rows, n]
    b = b - b.mean(axis=1, keepdims=True)  # [n_rows, n]
    num = np.einsum("ij,ij->i", a, b)  # [n_rows]
    den = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))  # [n_rows]
    with np.errstate(invalid="ignore"):
        return num / den


def spearman_bootstrap(x, y, n_boot=1000, ci=0.95, seed=0):
    """Spearman rho between paired x, y with a percentile bootstrap CI over pairs.

    Each bootstrap sample resamples pairs with replacement (seed scheme: module docstring),
    rank-transforms both sides with average ranks (as spearmanr does) and takes Pearson on the
    ranks -- all samples at once, no Python loop.
    Degenerate inputs return NaNs instead of raising: n < 3 pairs -> rho, p, CI all NaN;
    x or y constant -> rho undefined -> NaN (scipy would warn). Resamples that come out
    constant are left out of the CI (see n_boot_valid). NaN in x or y raises ValueError.
    """
    x, y = _as_1d(x, "x"), _as_1d(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    n = x.size
    nan = SpearmanResult(np.nan, np.nan, np.nan, np.nan, n, n_boot, 0, seed)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return nan
    rho, p = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # [n_boot, n] resampled pair indices
    rx = stats.rankdata(x[idx], axis=1)  # [n_boot, n] average ranks within each resample
    ry = stats.rankdata(y[idx], axis=1)  # [n_boot, n]
    boot = _rowwise_pearson(rx, ry)  # [n_boot]; NaN where a resample drew one value only
    lo, hi = percentile_ci(boot, ci)
    return SpearmanResult(
        float(rho), float(p), lo, hi, n, n_boot, int(np.isfinite(boot).sum()), seed
    )


def mean_ci(values, ci=0.95):
    """Mean with a Student-t confidence interval. n = 0 -> all NaN; n = 1 -> NaN interval."""
    v = _as_1d(values, "values")
    n = v.size
    if n == 0:
        return MeanCI(np.nan, np.nan, np.nan, 0)
    m = float(v.mean())
    if n == 1:
        return MeanCI(m, np.nan, np.nan, 1)
    half = stats.t.ppf((1 + ci) / 2, n - 1) * v.std(ddof=1) / np.sqrt(n)
    return MeanCI(m, float(m - half), float(m + half), n)


def bootstrap_mean_diff(a, b, n_boot=1000, ci=0.95, seed=0):
    """Difference of means mean(a) - mean(b), percentile bootstrap CI and Welch p-value.

    The groups are resampled independently (seed scheme: module docstring). An empty group
    gives all NaN; a group of one has no Welch p-value (NaN) but still a bootstrap CI.
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if a.size == 0 or b.size == 0:
        return MeanDiff(np.nan, np.nan, np.nan, np.nan, a.size, b.size, n_boot, seed)
    diff = float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(n_boot, a.size))  # [n_boot, n_a]
    ib = rng.integers(0, b.size, size=(n_boot, b.size))  # [n_boot, n_b]
    boot = a[ia].mean(axis=1) - b[ib].mean(axis=1)  # [n_boot]
    lo, hi = percentile_ci(boot, ci)
    p = np.nan
    if a.size >= 2 and b.size >= 2:
        with warnings.catch_warnings():  # two constant groups: scipy warns and returns NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return MeanDiff(diff, lo, hi, p, a.size, b.size, n_boot, seed)


def bootstrap_mean(values, n_boot=1000, ci=0.95, seed=0):
    """Mean with a percentile bootstrap CI over resampled items (seed scheme: module docstring).

    For a share (0/1 values) or a paired difference (per-item a - b) where a t interval is a poor
    fit. Vectors of the same length get the same resample indices from the same seed, so their
    intervals are paired. n = 0 -> all NaN; n = 1 -> NaN interval. NaN in values raises ValueError.
    """
    v = _as_1d(values, "values")
    n = v.size
    if n < 2:
        return MeanCI(float(v.mean()) if n else np.nan, np.nan, np.nan, n)
    rng = np.random.default_rng(seed)
    boot = v[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)  # [n_boot] resampled means
    lo, hi = percentile_ci(boot, ci)
    return MeanCI(float(v.mean()), lo, hi, n)
