"""lensflow.expertlens.expertise_torch: the torch expertise equals sklearn and the numba kernel (ties included).

CPU torch here; CUDA too when a GPU is present (the same tests, parametrised by device).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score

from lensflow.expertlens.expertise import expertise_table
from lensflow.expertlens.expertise_torch import expertise_stats, expertise_table_torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
STATS = ["ap", "off_mean", "on_p50", "on_p90"]


def sk_ap(scores, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no positives
        return np.array([average_precision_score(labels, scores[:, j]) for j in range(scores.shape[1])])


def np_stats(scores, labels):
    """off_mean and numpy 'linear' percentiles of the positives, straight from numpy."""
    s = scores.astype(np.float64)
    neg, pos = s[~labels], s[labels]
    off = neg.mean(0) if len(neg) else np.full(s.shape[1], np.nan)
    p50, p90 = np.percentile(pos, [50, 90], axis=0) if len(pos) else np.full((2, s.shape[1]), np.nan)
    return off, p50, p90


def data(seed, n, u, n_pos, kind):
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=bool)
    labels[rng.permutation(n)[:n_pos]] = True
    x = rng.standard_normal((n, u)) + labels[:, None] * rng.gamma(1.0, 0.5, u)[None, :]
    if kind == "grid":  # heavy ties: a 0.25 grid
        x = np.round(x * 4) / 4
    elif kind == "float32":
        x = x.astype(np.float32)
    elif kind == "grid32":
        x = (np.round(x * 4) / 4).astype(np.float32)
    elif kind == "int":
        x = rng.integers(0, 3, size=(n, u))
    return x, labels


CASES = [  # seed, n sentences, u units, positives, kind
    (0, 120, 150, 40, "grid"),
    (1, 37, 53, 11, "grid"),  # odd sizes
    (2, 101, 17, 1, "grid"),  # one positive
    (3, 99, 31, 98, "grid"),  # one negative
    (4, 250, 40, 125, "float32"),
    (5, 61, 29, 20, "grid32"),  # float32 with ties
    (6, 80, 12, 30, "float64"),
    (7, 45, 19, 15, "int"),
    (8, 1, 5, 1, "grid"),  # a single sentence
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed,n,u,n_pos,kind", CASES)
def test_equals_sklearn_numpy_and_the_numba_kernel(device, seed, n, u, n_pos, kind):
    x, labels = data(seed, n, u, n_pos, kind)
    got = expertise_table_torch(x, labels, device=device, chunk_units=7)  # 7: chunks that do not divide u
    np.testing.assert_allclose(got["ap"], sk_ap(x, labels), rtol=0, atol=1e-9)
    off, p50, p90 = np_stats(x, labels)
    np.testing.assert_allclose(got["off_mean"], off, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["on_p50"], p50, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["on_p90"], p90, rtol=0, atol=1e-9)
    numba = expertise_table(x, labels, chunk_size=5)
    for c in STATS:
        np.testing.assert_allclose(got[c], numba[c], rtol=0, atol=1e-9, err_msg=c)


@pytest.mark.parametrize("device", DEVICES)
def test_chunking_and_input_types_do_not_change_the_numbers(device):
    x, labels = data(11, 90, 40, 33, "grid32")
    ref = expertise_stats(torch.as_tensor(x, device=device), torch.as_tensor(labels)).cpu()
    for kw in ({"chunk_units": 1}, {"chunk_units": 13}, {"chunk_bytes": 1}, {"chunk_units": 1000}):
        assert torch.equal(expertise_stats(torch.as_tensor(x, device=device), labels, **kw).cpu(), ref), kw
    # float16 / bfloat16 blocks on the 0.25 grid hold the same values: same numbers
    for dt in (torch.float16, torch.bfloat16):
        got = expertise_stats(torch.as_tensor(x).to(device, dt), labels.astype(int)).cpu()
        assert torch.equal(got, ref), dt
    assert ref.dtype == torch.float64 and ref.shape == (4, 40)


def test_degenerate_cases_as_the_numba_kernel():
    x, labels = data(12, 30, 6, 0, "grid")
    with pytest.warns(UserWarning, match="No positive"):
        got = expertise_table_torch(x, labels)
    assert (got["ap"] == 0).all()
    np.testing.assert_allclose(got["off_mean"], x.mean(0), atol=1e-12)
    assert got["on_p50"].isna().all() and got["on_p90"].isna().all()
    x, labels = data(13, 30, 6, 30, "grid")  # all positive
    got = expertise_table_torch(x, labels)
    assert (got["ap"] == 1).all() and got["off_mean"].isna().all()
    const = np.ones((10, 3))  # one threshold: chance AP
    labels = np.arange(10) < 3
    np.testing.assert_allclose(expertise_table_torch(const, labels)["ap"], 0.3)


def test_bad_inputs_are_errors():
    x, labels = data(14, 20, 4, 5, "float64")
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        expertise_stats(bad, labels)
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        expertise_stats(bad, labels)
    with pytest.raises(ValueError, match="labels must be"):
        expertise_stats(x, labels[:-1])
    with pytest.raises(ValueError, match="boolean or 0/1"):
        expertise_stats(x, np.full(20, 2))
    with pytest.raises(ValueError, match=r"\[n_sentences, n_units\]"):
        expertise_stats(np.zeros((2, 2, 2)), [True, False])


def test_table_keeps_the_unit_index():
    x, labels = data(15, 25, 3, 8, "grid")
    index = pd.DataFrame({"module": "m", "unit": [0, 1, 2]})
    got = expertise_table_torch(x, labels, unit_index=index)
    assert list(got.columns) == ["module", "unit", *STATS]
    with pytest.raises(ValueError, match="unit_index has 2 rows"):
        expertise_table_torch(x, labels, unit_index=index.iloc[:2])
