"""lensflow.expertlens.expertise: vectorised AP must equal sklearn's average_precision_score, ties included."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from lensflow.expertlens.expertise import DEFAULT_THRESHOLDS, average_precision, count_above, expertise_table


def sk_ap(scores, labels):
    """Ground truth: one sklearn call per unit (what the anchor code does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when there are no positives
        return np.array([average_precision_score(labels, scores[:, j]) for j in range(scores.shape[1])])


def random_scores(rng, kind, n, u):
    if kind == "int":  # heavy ties
        return rng.integers(0, 4, size=(n, u)).astype(np.float64)
    if kind == "rounded":  # ties, not float32-exact
        return np.round(rng.standard_normal((n, u)), 1)
    if kind == "float32":  # continuous
        return rng.standard_normal((n, u)).astype(np.float32)
    if kind == "float64":  # continuous
        return rng.standard_normal((n, u))
    if kind == "float64_fine":  # distinct in float64, all tied if rounded to float32
        return 1.0 + rng.integers(0, 50, size=(n, u)) * 1e-12
    if kind == "signed_zero":  # -0.0 and +0.0 must tie
        s = rng.integers(-1, 2, size=(n, u)).astype(np.float32)
        s[rng.random((n, u)) < 0.3] = -0.0
        return s
    raise ValueError(kind)


KINDS = ["int", "rounded", "float32", "float64", "float64_fine", "signed_zero"]


@pytest.mark.parametrize("kind", KINDS)
def test_ap_matches_sklearn_random(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))  # deterministic per kind
    n, u = 120, 150
    scores = random_scores(rng, kind, n, u)
    labels = rng.random(n) < 0.3
    # chunk_size that does not divide u, so block boundaries are exercised
    got = average_precision(scores, labels, chunk_size=70)
    assert got.shape == (u,) and got.dtype == np.float64
    np.testing.assert_allclose(got, sk_ap(scores, labels), rtol=0, atol=1e-9)


def test_ap_matches_sklearn_mixed_blocks():
    # one block with ties next to blocks without: both branches of the formula in one call
    rng = np.random.default_rng(7)
    scores = rng.standard_normal((80, 40))
    scores[:, 25:] = np.round(scores[:, 25:])
    labels = rng.random(80) < 0.5
    got = average_precision(scores, labels, chunk_size=10)
    np.testing.assert_allclose(got, sk_ap(scores, labels), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "dtype,n_pos,n_neg",
    [
        (np.float32, 1100, 700),  # 3 sort chunks of positives (an odd run left over), 2 of negatives
        (np.float64, 700, 40),  # float64 chunks are half as long: 3 + 1
        (np.float64, 3, 900),  # classes of very different sizes; 4 chunks = 2 merge passes
        (np.float32, 1600, 1),
        (np.float16, 600, 600),
    ],
)
def test_expertise_long_classes_sorted_in_chunks(dtype, n_pos, n_neg):
    # Classes longer than one sort chunk are sorted in pieces and merged; ties straddle pieces.
    rng = np.random.default_rng(n_pos)
    n = n_pos + n_neg
    scores = np.concatenate([rng.integers(0, 30, size=(n, 5)), rng.standard_normal((n, 6))], axis=1).astype(dtype)
    labels = rng.permutation(np.arange(n) < n_pos)
    table = expertise_table(scores, labels, chunk_size=5)
    np.testing.assert_allclose(table["ap"], sk_ap(scores, labels), rtol=0, atol=1e-9)
    s64 = scores.astype(np.float64)
    np.testing.assert_allclose(table["off_mean"], s64[~labels].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["on_p50"], np.percentile(s64[labels], 50, axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["on_p90"], np.percentile(s64[labels], 90, axis=0), rtol=1e-12)


def test_ap_threads_and_memory_layouts_give_identical_values():
    rng = np.random.default_rng(11)
    scores = np.round(rng.standard_normal((300, 90)), 2).astype(np.float32)
    labels = rng.random(300) < 0.4
    one = average_precision(scores, labels, chunk_size=16)
    np.testing.assert_allclose(one, sk_ap(scores, labels), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(average_precision(scores, labels, chunk_size=16, threads=3), one)
    np.testing.assert_array_equal(average_precision(np.asfortranarray(scores), labels, chunk_size=16), one)
    wide = np.repeat(scores, 2, axis=1)  # a strided view: every other column
    np.testing.assert_array_equal(average_precision(wide[:, ::2], labels, chunk_size=16), one)
    np.testing.assert_array_equal(average_precision(scores.astype(">f4"), labels, chunk_size=16), one)


def test_expertise_table_reads_rows_in_place():
    # a concept's sentences picked out of a larger bank by row position, as iter_expertise does
    rng = np.random.default_rng(5)
    bank = np.round(rng.standard_normal((400, 30)), 1).astype(np.float32)
    rows = rng.choice(400, size=150, replace=False)
    labels = rng.random(150) < 0.4
    got = expertise_table(bank, labels, chunk_size=8, rows=rows)
    pd.testing.assert_frame_equal(got, expertise_table(bank[rows], labels, chunk_size=8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no positives
        none = expertise_table(bank, np.zeros(150, bool), rows=rows)
    np.testing.assert_allclose(none["off_mean"], bank[rows].mean(axis=0, dtype=np.float64), rtol=1e-12)
    for bad in (rows[:-1], rows + 400, rows.astype(float)):
        with pytest.raises(ValueError, match="rows|labels"):
            expertise_table(bank, labels, rows=bad)


def test_ap_small_random_shapes():
    rng = np.random.default_rng(3)
    for _ in range(100):
        n, u = int(rng.integers(1, 25)), int(rng.integers(1, 6))
        scores = rng.integers(0, 3, size=(n, u)).astype(np.float32)
        labels = rng.random(n) < rng.random()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # some draws have no positives (tested below)
            got = average_precision(scores, labels, chunk_size=int(rng.integers(1, 4)))
        np.testing.assert_allclose(got, sk_ap(scores, labels), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "name,scores,labels,expected",
    [
        ("all_equal", [[2.0]] * 5, [1, 0, 1, 0, 0], 0.4),  # one threshold: AP = prevalence
        ("single_positive_top", [[5.0], [1.0], [2.0], [3.0]], [1, 0, 0, 0], 1.0),
        ("single_positive_bottom", [[0.0], [1.0], [2.0], [3.0]], [1, 0, 0, 0], 0.25),
        ("all_positive", [[3.0], [1.0], [2.0]], [1, 1, 1], 1.0),
        ("perfect", [[3.0], [2.0], [1.0], [0.0]], [1, 1, 0, 0], 1.0),
        ("reversed", [[0.0], [1.0], [2.0], [3.0]], [1, 1, 0, 0], (1 / 3 + 2 / 4) / 2),
        ("tie_across_classes", [[1.0], [1.0], [0.0]], [1, 0, 0], 0.5),
    ],
)
def test_ap_degenerate(name, scores, labels, expected):
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=bool)
    got = average_precision(scores, labels)
    assert got[0] == pytest.approx(expected, abs=1e-12), name
    assert got[0] == pytest.approx(sk_ap(scores, labels)[0], abs=1e-12), name


def test_ap_no_positives_is_zero_with_warning_like_sklearn():
    scores = np.random.default_rng(0).standard_normal((6, 3))
    labels = np.zeros(6, dtype=bool)
    with pytest.warns(UserWarning, match="No positive"):
        got = average_precision(scores, labels)
    np.testing.assert_array_equal(got, np.zeros(3))
    np.testing.assert_array_equal(got, sk_ap(scores, labels))


def test_ap_one_dimensional_scores_and_int_labels():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    got = average_precision(scores, labels)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_ap_rejects_non_finite(bad):
    scores = np.ones((4, 3))
    scores[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        average_precision(scores, np.array([1, 0, 1, 0], dtype=bool))


def test_ap_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        average_precision(np.ones((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="labels"):
        average_precision(np.ones((3, 2)), np.array([0, 1]))


def test_expertise_table_columns():
    rng = np.random.default_rng(11)
    n, u = 50, 23
    scores = rng.standard_normal((n, u)).astype(np.float32)
    labels = rng.random(n) < 0.4
    index = pd.DataFrame({"module": ["mlp"] * u, "layer": np.arange(u) // 5, "unit": np.arange(u)})
    table = expertise_table(scores, labels, index, chunk_size=6)
    assert list(table.columns) == ["module", "layer", "unit", "ap", "off_mean", "on_p50", "on_p90"]
    pd.testing.assert_frame_equal(table[index.columns], index)
    s = scores.astype(np.float64)
    np.testing.assert_allclose(table["ap"], sk_ap(scores, labels), atol=1e-9)
    np.testing.assert_allclose(table["off_mean"], s[~labels].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["on_p50"], np.median(s[labels], axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["on_p90"], np.percentile(s[labels], 90, axis=0), rtol=1e-12)


def test_expertise_table_default_index_and_missing_class():
    scores = np.arange(12, dtype=float).reshape(4, 3)
    table = expertise_table(scores, np.ones(4, dtype=bool))  # no negatives
    assert list(table["unit"]) == [0, 1, 2]
    assert table["off_mean"].isna().all()
    np.testing.assert_allclose(table["on_p50"], [4.5, 5.5, 6.5])
    with pytest.raises(ValueError, match="unit_index"):
        expertise_table(scores, np.ones(4, dtype=bool), pd.DataFrame({"unit": [0, 1]}))


def test_count_above():
    ap = np.array([0.5, 0.55, 0.7, 0.9, 1.0, np.nan, 0.2])
    np.testing.assert_array_equal(count_above(ap, [0.0, 0.5, 0.6, 0.9, 1.0]), [6, 4, 3, 1, 0])
    counts = count_above(ap)
    assert counts.shape == DEFAULT_THRESHOLDS.shape == (501,)
    direct = [(ap[~np.isnan(ap)] > t).sum() for t in DEFAULT_THRESHOLDS]
    np.testing.assert_array_equal(counts, direct)
