"""lensflow.expertlens.similarity: expert sets, Jaccard / cosine matrices, pair look-up."""

import numpy as np
import pandas as pd
import pytest

from lensflow.expertlens.similarity import cosine_matrix, expert_sets, jaccard_matrix, pair_values


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


# --- float32 AP matrices: no float64 copy, the same results -----------------------------------


def test_float32_thresholds_match_the_float64_comparison():
    """AP > tau decided as on the exact float64 values, also where float32(tau) rounds up (0.1)."""
    taus = [0.1, 0.3, 0.5, 0.7, 0.9, 1 / 3]
    edges = [np.float32(t) for t in taus] + [np.nextafter(np.float32(t), np.float32(v)) for t in taus for v in (0, 1)]
    rng = np.random.default_rng(2)
    ap = np.concatenate([np.array(edges, dtype=np.float32), rng.random(500, dtype=np.float32), [np.nan]])[None, :]
    for tau in taus:
        masks, _ = expert_sets(ap, tau)
        np.testing.assert_array_equal(masks, ap.astype(np.float64) > tau)
        masks_df, _ = expert_sets(pd.DataFrame(ap), tau)
        np.testing.assert_array_equal(masks_df, masks)


def test_float32_similarities_equal_those_of_the_float64_copy():
    from lensflow.expertlens.pipeline import similarities

    rng = np.random.default_rng(3)
    ap = rng.beta(0.5, 2.0, size=(9, 700)).astype(np.float32)
    ap[4] = 0.0  # no direction: NaN cosine
    names = [f"c{i}" for i in range(9)]
    got = similarities(names, ap, [0.3, 0.5, 0.1])
    want = similarities(names, ap.astype(np.float64), [0.3, 0.5, 0.1])
    pd.testing.assert_frame_equal(got, want)  # exactly: the blocks are summed in float64 either way
    np.testing.assert_array_equal(cosine_matrix(ap, chunk_size=64), cosine_matrix(ap.astype(np.float64), chunk_size=64))
    with pytest.raises(ValueError, match="NaN"):
        cosine_matrix(np.array([[0.5, np.nan]], dtype=np.float32), chunk_size=1)


def test_similarities_of_a_float32_matrix_make_no_whole_copy_of_it():
    """Peak extra memory: bool masks ([c, units], a quarter of the float32 matrix each; the
    previous tau's is alive while the next is made) and one block, never a float64 copy (2x)."""
    import tracemalloc

    from lensflow.expertlens.pipeline import similarities

    rng = np.random.default_rng(4)
    ap = rng.random((40, 250_000), dtype=np.float32)  # 40 MB
    names = [f"c{i}" for i in range(40)]
    tracemalloc.start()
    similarities(names, ap, [0.5, 0.9])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.7 * ap.nbytes, peak  # a float64 copy alone would be 2 x ap.nbytes
