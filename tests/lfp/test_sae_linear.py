"""The linear-code reference of the sparse-code check (lensflow.lfp.sae.linear): a tied ReLU SAE
that holds the top-k principal subspace, checked against a direct numpy PCA reconstruction."""

import numpy as np
import pytest
import torch

from lensflow.lfp.sae.linear import linear_code_metrics, linear_code_sae, principal_subspace
from lensflow.lfp.sae.metrics import sae_metrics


def data(n, d=12, rank=3, noise=0.01, seed=0):
    """[n, d] activations: an offset, `rank` strong directions, small isotropic noise, one huge dimension."""
    basis = np.linalg.qr(np.random.default_rng(99).normal(size=(d, rank)))[0].T  # [rank, d], the same for every seed
    g = np.random.default_rng(seed)
    x = 5.0 + (g.normal(size=(n, rank)) * [4.0, 2.0, 1.0][:rank]) @ basis + noise * g.normal(size=(n, d))
    x[:, 0] *= 100.0  # a large-norm dimension, as at layer 28
    return x.astype(np.float32)


def batches(x, size=64):
    return [x[i:i + size] for i in range(0, len(x), size)]


def pca_fvus(train, heldout, k):
    """(FVU, per-dimension FVU) of the top-k PCA reconstruction, computed directly in float64."""
    tr, he = train.astype(np.float64), heldout.astype(np.float64)
    mu = tr.mean(0)
    _, _, vt = np.linalg.svd(tr - mu, full_matrices=False)
    rec = mu + (he - mu) @ vt[:k].T @ vt[:k]
    sse_d = ((he - rec) ** 2).sum(0)
    sst_d = ((he - he.mean(0)) ** 2).sum(0)
    return sse_d.sum() / sst_d.sum(), (sse_d / sst_d).mean()


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_the_sae_reconstructs_as_pca_does(k):
    train, heldout = data(600), data(300, seed=1)
    m = linear_code_metrics(batches(train), batches(heldout), d_in=12, d_hidden=12, l0_fraction=k / 12,
                            input_scale=0.05)
    fvu, per_dim = pca_fvus(train, heldout, k)
    assert m["linear_k"] == k
    assert m["linear_fvu"] == pytest.approx(fvu, rel=1e-3, abs=1e-6)
    assert m["linear_fvu_per_dim"] == pytest.approx(per_dim, rel=1e-3, abs=1e-6)
    assert m["linear_l0"] == pytest.approx(k, abs=0.01)  # one of each +-v pair fires on every token


def test_a_subspace_holding_the_data_leaves_only_the_noise():
    train, heldout = data(600, noise=1e-3), data(300, noise=1e-3, seed=1)
    full = linear_code_metrics(batches(train), batches(heldout), 12, 24, l0_fraction=3 / 24)
    short = linear_code_metrics(batches(train), batches(heldout), 12, 24, l0_fraction=2 / 24)
    assert full["linear_fvu"] < 1e-4 < short["linear_fvu"]


def test_directions_are_orthonormal_and_ordered_by_variance():
    x = data(500)
    mean, v = principal_subspace(batches(x), 12, 3)  # [12], [3, 12]
    assert torch.allclose(mean, torch.tensor(x, dtype=torch.float64).mean(0), rtol=1e-6)
    assert torch.allclose(v @ v.T, torch.eye(3, dtype=torch.float64), atol=1e-8)
    centred = torch.tensor(x, dtype=torch.float64) - mean
    variances = ((centred @ v.T) ** 2).mean(0)
    assert variances[0] >= variances[1] >= variances[2]


def test_too_few_features_for_the_subspace_is_an_error():
    mean, v = principal_subspace(batches(data(100)), 12, 4)
    with pytest.raises(ValueError, match="2k = 8 features"):
        linear_code_sae(mean, v, d_hidden=7)
    sae = linear_code_sae(mean, v, d_hidden=9)  # the unused ninth feature never fires
    _, codes = sae(torch.tensor(data(50, seed=3)))
    assert (codes[:, 8] == 0).all()
    assert sae_metrics(sae, torch.tensor(data(50, seed=3)))["dead_fraction"] == pytest.approx(1 / 9)
