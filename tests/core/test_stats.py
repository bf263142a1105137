"""lensflow.core.stats: Spearman + bootstrap, t-interval of a mean, two-group mean difference."""

import warnings

import numpy as np
import pytest
from scipy import stats

from lensflow.core.stats import bootstrap_mean_diff, mean_ci, spearman_bootstrap


def correlated(n, seed, rho=0.6):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    return x, np.round(y, 1)  # rounding adds ties on one side


def naive_bootstrap(x, y, n_boot, ci, seed):
    """Loop version with the documented seed scheme: one rng, all indices drawn at once."""
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    rhos = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in idx:
            rhos.append(stats.spearmanr(x[row], y[row])[0])
    rhos = np.array(rhos)
    return np.percentile(rhos[np.isfinite(rhos)], [50 * (1 - ci), 50 * (1 + ci)])


def test_spearman_point_estimate_equals_scipy():
    x, y = correlated(200, 0)
    res = spearman_bootstrap(x, y, n_boot=200)
    rho, p = stats.spearmanr(x, y)
    assert res.rho == pytest.approx(rho, abs=1e-12)
    assert res.p == pytest.approx(p, rel=1e-9)
    assert res.n == 200 and res.n_boot == 200 and res.seed == 0
    assert res.ci_low < res.rho < res.ci_high
    assert 0.3 < res.rho < 0.8  # the data really are correlated (true rho ~0.58)


def test_spearman_bootstrap_matches_loop_and_is_reproducible():
    x, y = correlated(60, 1)
    res = spearman_bootstrap(x, y, n_boot=300, ci=0.9, seed=5)
    lo, hi = naive_bootstrap(x, y, 300, 0.9, 5)
    assert res.ci_low == pytest.approx(lo, abs=1e-10)
    assert res.ci_high == pytest.approx(hi, abs=1e-10)
    again = spearman_bootstrap(x, y, n_boot=300, ci=0.9, seed=5)
    assert again.as_dict() == res.as_dict()
    other = spearman_bootstrap(x, y, n_boot=300, ci=0.9, seed=6)
    assert (other.ci_low, other.ci_high) != (res.ci_low, res.ci_high)


def test_spearman_constant_resamples_are_skipped():
    # 4 pairs: some of the 200 resamples draw a single pair (rho undefined)
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])
    res = spearman_bootstrap(x, y, n_boot=200, seed=0)
    assert 0 < res.n_boot_valid < 200
    lo, hi = naive_bootstrap(x, y, 200, 0.95, 0)
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi), abs=1e-10)


def test_spearman_degenerate():
    small = spearman_bootstrap([1.0, 2.0], [2.0, 1.0])
    assert small.n == 2 and np.isnan([small.rho, small.p, small.ci_low, small.ci_high]).all()
    const = spearman_bootstrap(np.ones(10), np.arange(10.0))
    assert const.n == 10 and np.isnan(const.rho) and np.isnan(const.ci_low)
    with pytest.raises(ValueError, match="NaN"):
        spearman_bootstrap([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="length"):
        spearman_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0])


def test_mean_ci():
    v = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    res = mean_ci(v, ci=0.9)
    half = stats.t.ppf(0.95, 4) * stats.sem(v)
    assert res.mean == pytest.approx(5.0)
    assert (res.ci_low, res.ci_high) == pytest.approx((5.0 - half, 5.0 + half), abs=1e-12)
    assert res.n == 5
    one = mean_ci([3.0])
    assert one.mean == 3.0 and np.isnan(one.ci_low) and one.n == 1
    assert np.isnan(mean_ci([]).mean)


def test_bootstrap_mean_diff():
    rng = np.random.default_rng(2)
    a = rng.normal(1.0, 1.0, 40)
    b = rng.normal(0.0, 2.0, 55)
    res = bootstrap_mean_diff(a, b, n_boot=500, seed=3)
    assert res.diff == pytest.approx(a.mean() - b.mean())
    assert res.ci_low < res.diff < res.ci_high
    assert res.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    # loop with the documented seed scheme: group a's indices first, then group b's
    r = np.random.default_rng(3)
    ia = r.integers(0, a.size, size=(500, a.size))
    ib = r.integers(0, b.size, size=(500, b.size))
    boot = [a[i].mean() - b[j].mean() for i, j in zip(ia, ib)]
    assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])), abs=1e-12)
    tiny = bootstrap_mean_diff([1.0], [2.0, 3.0])
    assert tiny.diff == pytest.approx(-1.5) and np.isnan(tiny.p)
    assert np.isnan(bootstrap_mean_diff([], [1.0]).diff)
