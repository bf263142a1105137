"""lensflow.similarity: expert sets, Jaccard / cosine matrices, pair look-up."""

import numpy as np
import pandas as pd
import pytest

from lensflow.similarity import cosine_matrix, expert_sets, jaccard_matrix, pair_values


def test_expert_sets_strict_threshold_and_names():
    ap = np.array([[0.5, 0.51, 0.9, np.nan], [0.2, 0.5, 0.5, 0.6]])
    masks, names = expert_sets(ap, 0.5)
    np.testing.assert_array_equal(masks, [[False, True, True, False], [False, False, False, True]])
    assert names == [0, 1]
    df = pd.DataFrame(ap, index=["cat", "dog"])
    masks_df, names_df = expert_sets(df, 0.5)
    np.testing.assert_array_equal(masks_df, masks)
    assert names_df == ["cat", "dog"]
    with pytest.raises(ValueError):
        expert_sets(ap, 0.5, names=["only_one"])


def test_jaccard_against_python_sets():
    rng = np.random.default_rng(0)
    c, u = 12, 500
    density = rng.choice([0.0, 0.0, 0.01, 0.1, 0.5], size=c)  # several empty rows
    masks = rng.random((c, u)) < density[:, None]
    assert (masks.sum(axis=1) == 0).sum() >= 2  # the both-empty case is exercised
    jac, both_empty = jaccard_matrix(masks, chunk_size=37)
    sets = [set(np.flatnonzero(m)) for m in masks]
    for i in range(c):
        for j in range(c):
            union = sets[i] | sets[j]
            assert both_empty[i, j] == (len(union) == 0)
            want = len(sets[i] & sets[j]) / len(union) if union else 0.0
            assert jac[i, j] == pytest.approx(want, abs=1e-15)
    np.testing.assert_array_equal(jac, jac.T)


def test_jaccard_small_exact():
    masks = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)
    jac, both_empty = jaccard_matrix(masks)
    np.testing.assert_allclose(jac, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(both_empty, [[0, 0, 0], [0, 0, 0], [0, 0, 1]])


def test_cosine_against_direct():
    rng = np.random.default_rng(1)
    ap = rng.random((7, 300))
    ap[3] = 0.0  # zero vector -> NaN row and column
    cos = cosine_matrix(ap, chunk_size=64)
    for i in range(7):
        for j in range(7):
            a, b = ap[i], ap[j]
            if not a.any() or not b.any():
                assert np.isnan(cos[i, j])
            else:
                want = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
                assert cos[i, j] == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError):
        cosine_matrix(np.array([[np.nan, 1.0]]))


def test_pair_values_covered_only():
    names = ["cat", "dog", "car"]
    m = np.arange(9.0).reshape(3, 3)
    pairs = [("cat", "dog"), ("cat", "tree"), ("car", "cat"), ("sun", "moon"), ("dog", "dog")]
    out = pair_values(m, names, pairs)
    assert list(zip(out["word_a"], out["word_b"])) == [("cat", "dog"), ("car", "cat"), ("dog", "dog")]
    np.testing.assert_array_equal(out["value"], [1.0, 6.0, 4.0])
    # DataFrame input keeps extra columns (e.g. the human rating)
    df = pd.DataFrame({"word_a": ["dog", "x"], "word_b": ["car", "cat"], "human": [12.0, 40.0]})
    out = pair_values(m, names, df)
    assert out.to_dict("list") == {"word_a": ["dog"], "word_b": ["car"], "human": [12.0], "value": [5.0]}
