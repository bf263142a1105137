"""Probe validation by feature activity (lensflow.lfp.validation.activity, paper Table 7)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensflow.lfp.validation.activity import activity_when_high, related_columns


def _known_case():
    """100 inputs x 10 features; the first 40 are predicted high (pred 5), the rest low (pred 0).
    High rows: feature 0 always active, feature 1 on every other row. Low rows: only feature 5."""
    codes = np.zeros((100, 10))
    codes[:40, 0] = 2.0
    codes[0:40:2, 1] = 0.5
    codes[40:, 5] = 1.0
    codes[40:, 6] = -3.0  # negative codes are not "active"
    pred = np.r_[np.full(40, 5.0), np.zeros(60)]
    return codes, pred


def test_known_answer():
    codes, pred = _known_case()
    r = activity_when_high(codes, pred, threshold=3.0, related=[1, 0, 1], n_boot=300, seed=2)
    assert (r["n"], r["n_high"], r["n_related"], r["n_features"], r["reason"]) == (100, 40, 2, 10, None)
    assert r["related_rate_high"] == pytest.approx((1.0 + 0.5) / 2)
    assert r["average_rate_high"] == pytest.approx((40 + 20) / 400)
    assert r["diff_high"] == pytest.approx(0.75 - 0.15)
    assert r["ratio_high"] == pytest.approx(5.0)
    assert r["related_rate_all"] == pytest.approx((40 + 20) / 200)
    assert r["average_rate_all"] == pytest.approx((40 + 20 + 60) / 1000)
    # Per high row the average rate is 0.2 or 0.1 (feature 1 on or off), so the interval is narrow.
    assert 0.12 < r["average_rate_high_ci_low"] < 0.15 < r["average_rate_high_ci_high"] < 0.18
    assert r["related_rate_high_ci_low"] < 0.75 < r["related_rate_high_ci_high"]
    assert 0.6 < r["related_rate_high_ci_low"] and r["related_rate_high_ci_high"] < 0.9
    assert r["diff_high_ci_low"] > 0


def test_matches_per_feature_rates_and_manual_bootstrap():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(300, 24)) - 0.5  # [n, n_features]
    pred = rng.normal(2.0, 2.0, size=300)
    related = np.array([3, 7, 20])
    r = activity_when_high(codes, pred, 3.0, related, n_boot=200, seed=9)
    act = codes[pred > 3.0] > 0  # [n_high, n_features]
    assert r["n_high"] == act.shape[0]
    assert r["related_rate_high"] == pytest.approx(np.mean([act[:, j].mean() for j in related]))
    assert r["average_rate_high"] == pytest.approx(np.mean([act[:, j].mean() for j in range(24)]))
    idx = np.random.default_rng(9).integers(0, act.shape[0], size=(200, act.shape[0]))
    boot = act[:, related].mean(axis=1)[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert (r["related_rate_high_ci_low"], r["related_rate_high_ci_high"]) == pytest.approx((lo, hi))


def test_undefined_cases_give_nan_and_reason():
    codes, pred = _known_case()
    none_high = activity_when_high(codes, pred, threshold=10.0, related=[0, 1], n_boot=50)
    assert none_high["n_high"] == 0 and "no input" in none_high["reason"]
    for k in ("related_rate_high", "average_rate_high", "diff_high", "ratio_high", "diff_high_ci_low"):
        assert np.isnan(none_high[k]), k
    assert none_high["related_rate_all"] == pytest.approx(0.3)  # all-input rates stay defined
    no_rel = activity_when_high(codes, pred, 3.0, related=np.array([], dtype=int), n_boot=50)
    assert no_rel["n_related"] == 0 and "no task-related" in no_rel["reason"]
    for k in ("related_rate_high", "diff_high", "ratio_high", "related_rate_all", "related_rate_high_ci_high"):
        assert np.isnan(no_rel[k]), k
    assert no_rel["average_rate_high"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="related columns"):
        activity_when_high(codes, pred, 3.0, related=[10])
    with pytest.raises(ValueError, match="n_features"):
        activity_when_high(codes, pred[:-1], 3.0, related=[0])


def test_related_columns_two_layers_of_different_widths():
    table = pd.DataFrame({"layer": [3, 1, 1, 3, 3], "feature": [2, 0, 5, 1, 2],
                          "related": [True, True, True, False, True]})
    # Probe order: layer 3 (width 4) first, then layer 1 (width 6) at offset 4.
    np.testing.assert_array_equal(related_columns([3, 1], {3: 4, 1: 6}, table), [2, 4, 9])
    np.testing.assert_array_equal(related_columns([3, 1], [4, 6], table), [2, 4, 9])
    np.testing.assert_array_equal(related_columns([1, 3], {3: 4, 1: 6}, table), [0, 5, 8])
    as_int = table.assign(related=table["related"].astype(int))
    np.testing.assert_array_equal(related_columns([3, 1], [4, 6], as_int), [2, 4, 9])
    none = related_columns([3, 1], [4, 6], table.assign(related=False))
    assert none.size == 0 and none.dtype == np.int64
    with pytest.raises(ValueError, match="not among"):
        related_columns([3], [4], table)
    with pytest.raises(ValueError, match="out of range"):
        related_columns([3, 1], [4, 5], table)
    with pytest.raises(TypeError, match="boolean"):
        related_columns([3, 1], [4, 6], table.assign(related=table["related"].map({True: "yes", False: "no"})))
