"""The paper's tied sparse autoencoder: tying, training, metrics, persistence."""

import math

import pytest
import torch

from lensflow.lfp.sae.metrics import sae_metrics
from lensflow.lfp.sae.model import SparseAutoencoder, input_scale_of, load_sae, save_sae, train_sae


def sparse_data(n=2048, d_in=16, n_true=24, k=2, seed=0):
    """x = sum of k random unit atoms with positive weights: a known sparse structure."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_true, d_in, generator=g), dim=1)  # [n_true, d_in]
    idx = torch.stack([torch.randperm(n_true, generator=g)[:k] for _ in range(n)])  # [n, k]
    w = torch.rand(n, k, generator=g) + 0.5  # [n, k]
    return torch.einsum("nk,nkd->nd", w, atoms[idx])  # [n, d_in]


def test_tied_weights_are_one_parameter():
    sae = SparseAutoencoder(8, 16, tied=True, seed=0)
    names = [n for n, _ in sae.named_parameters()]
    assert names == ["W_E", "b_E", "b_D"]
    # The decoder is a view of the encoder's storage, not a copy.
    assert sae.W_D.data_ptr() == sae.W_E.data_ptr()
    assert sae.W_D.shape == (8, 16)

    x = torch.randn(32, 8)
    opt = torch.optim.SGD(sae.parameters(), lr=0.1)
    before = sae.W_D.detach().clone()
    sae.loss(x)["loss"].backward()
    opt.step()
    assert not torch.equal(sae.W_D.detach(), before)  # the decoder moved ...
    assert torch.equal(sae.W_D.detach(), sae.W_E.detach().t())  # ... exactly as W_E^T


def test_untied_has_separate_decoder():
    sae = SparseAutoencoder(8, 16, tied=False, seed=0)
    params = dict(sae.named_parameters())
    assert set(params) == {"W_E", "b_E", "b_D", "W_D_untied"}
    assert sae.W_D.data_ptr() != sae.W_E.data_ptr()
    # Starts at the tied solution, then drifts apart under training.
    assert torch.equal(sae.W_D.detach(), sae.W_E.detach().t())
    opt = torch.optim.SGD(sae.parameters(), lr=0.1)
    sae.loss(torch.randn(32, 8))["loss"].backward()
    opt.step()
    assert not torch.equal(sae.W_D.detach(), sae.W_E.detach().t())


def test_forward_shapes_and_relu():
    sae = SparseAutoencoder(8, 24, seed=1)
    x_hat, codes = sae(torch.randn(5, 8))
    assert x_hat.shape == (5, 8) and codes.shape == (5, 24)
    assert (codes >= 0).all()


def test_loss_normalisation_by_hand():
    sae = SparseAutoencoder(2, 3, alpha=0.5)
    with torch.no_grad():
        sae.W_E.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    # codes: [1, 2, 0] and [3, 0, 0]; x_hat = codes @ W_E = [1, 2] and [3, 0].
    parts = sae.loss(x)
    assert parts["mse"].item() == pytest.approx((0 + 0 + 0 + 1) / 4)  # mean over elements
    assert parts["l1"].item() == pytest.approx((3 + 3) / 2)  # per-example sum, batch mean
    assert parts["loss"].item() == pytest.approx(0.25 + 0.5 * 3)


@pytest.mark.parametrize("tied", [True, False])
def test_training_reduces_loss(tied):
    x = sparse_data()
    batches = list(x.split(32))
    sae, hist = train_sae(batches, d_in=16, d_hidden=32, tied=tied, alpha=1e-3, lr=1e-2, epochs=3, seed=0, log_every=16)
    assert list(hist.columns) == ["step", "examples", "loss", "mse", "l1"]
    assert hist["step"].iloc[-1] == 3 * len(batches)
    assert hist["examples"].iloc[-1] == 3 * len(x)
    assert hist["loss"].iloc[-1] < 0.5 * hist["loss"].iloc[0]
    assert sae_metrics(sae, x)["fvu"] < 0.5


def test_n_steps_reiterates_and_is_seeded():
    x = sparse_data(n=256)
    batches = list(x.split(32))  # 8 batches
    sae_a, hist = train_sae(batches, 16, 16, n_steps=20, log_every=5, seed=3)
    assert hist["step"].tolist() == [5, 10, 15, 20]
    sae_b, _ = train_sae(batches, 16, 16, n_steps=20, log_every=5, seed=3)
    assert torch.equal(sae_a.W_E, sae_b.W_E)
    with pytest.raises(ValueError, match="yielded nothing"):
        train_sae(iter(batches), 16, 16, epochs=2)  # a one-shot iterator cannot do epoch 2


def test_nan_loss_raises_with_step():
    batches = [torch.randn(4, 8) for _ in range(3)]
    batches[2][0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="step 3"):
        train_sae(batches, 8, 8)


def test_bad_batch_shape_raises():
    with pytest.raises(ValueError, match="shape"):
        train_sae([torch.randn(4, 7)], 8, 8)


def test_metrics_by_hand():
    sae = SparseAutoencoder(2, 3)
    with torch.no_grad():
        sae.W_E.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    m = sae_metrics(sae, x, batch_size=1)  # chunking must not change the answer
    # errors: only x[1,1] (-1 reconstructed as 0) -> sse 1.
    # mean = [2, 0.5]; squared deviations: (1 + 1) + (2.25 + 2.25) = 6.5.
    assert m["mse"] == pytest.approx(1 / 4)
    assert m["fvu"] == pytest.approx(1 / 6.5)
    assert m["l0"] == pytest.approx((2 + 1) / 2)
    assert m["l1"] == pytest.approx(3.0)
    assert m["dead_fraction"] == pytest.approx(1 / 3)  # feature 2 never fires
    assert m["n"] == 2
    # An iterable of batches gives the same numbers.
    m2 = sae_metrics(sae, [x[:1], x[1:]])
    assert m2 == pytest.approx(m)


def test_metrics_constant_input_has_nan_fvu():
    sae = SparseAutoencoder(2, 3, seed=0)
    assert math.isnan(sae_metrics(sae, torch.ones(4, 2))["fvu"])


@pytest.mark.parametrize("tied", [True, False])
def test_save_load_round_trip(tmp_path, tied):
    sae = SparseAutoencoder(8, 16, tied=tied, alpha=0.0015, seed=4, input_scale=2.5)
    with torch.no_grad():
        sae.b_E.uniform_()
        sae.b_D.uniform_()
    path = tmp_path / "sae.safetensors"
    save_sae(sae, path)
    back = load_sae(path)
    assert back.config() == {"d_in": 8, "d_hidden": 16, "tied": tied, "alpha": 0.0015, "input_scale": 2.5}
    for (n1, p1), (n2, p2) in zip(sae.state_dict().items(), back.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    x = torch.randn(3, 8)
    assert torch.equal(sae(x)[0], back(x)[0])
    if tied:
        assert back.W_D.data_ptr() == back.W_E.data_ptr()


# ------------------------------------------------------------------ input scale (issue 16 item 3)
def test_input_scale_gives_mean_norm_sqrt_d():
    x = torch.randn(600, 8) * 37.0 + 5.0
    s = input_scale_of([x[:256], x[256:]], 8)
    assert float((x * s).norm(dim=-1).mean()) == pytest.approx(math.sqrt(8), rel=1e-5)
    assert input_scale_of([torch.zeros(4, 8)], 8) == 1.0


def test_scaled_sae_trains_like_an_unscaled_one_on_scaled_inputs_and_speaks_model_units():
    # Training on x with the scale is training on s*x without it; reconstructions come back
    # divided by s (model units), codes are identical, so downstream code sees no difference.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=gen) * 300.0  # a large-norm layer
    batches = list(x.split(32))
    scaled, _ = train_sae(batches, 6, 12, alpha=1e-3, lr=1e-2, n_steps=40, seed=3)
    s = scaled.input_scale
    assert s == pytest.approx(input_scale_of(batches, 6))
    plain, _ = train_sae([b * s for b in batches], 6, 12, alpha=1e-3, lr=1e-2, n_steps=40, seed=3, normalise=False)
    assert plain.input_scale == 1.0
    with torch.no_grad():
        assert torch.allclose(scaled.encode(x), plain.encode(x * s), atol=1e-4)
        assert torch.allclose(scaled(x)[0] * s, plain(x * s)[0], atol=1e-3)
        assert scaled.loss(x)["mse"].item() == pytest.approx(plain.loss(x * s)["mse"].item(), rel=1e-4)
    # FVU is a ratio: the same in either unit
    assert sae_metrics(scaled, x)["fvu"] == pytest.approx(sae_metrics(plain, x * s)["fvu"], rel=1e-4)


def test_per_dimension_fvu_is_not_hidden_by_one_huge_dimension():
    # Dimension 0 (variance 1e6) is reconstructed exactly, dimensions 1-3 (variance 1) not at all:
    # the pooled FVU is ~0, the per-dimension FVU is ~3/4.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(512, 4, generator=gen)
    x[:, 0] *= 1000.0
    sae = SparseAutoencoder(4, 2, seed=0)
    with torch.no_grad():
        sae.W_E.zero_()
        sae.W_E[0, 0], sae.W_E[1, 0] = 1.0, -1.0  # codes: relu(x0), relu(-x0); tied decode: x0 back
        sae.b_D.copy_(x[:, 1:].mean(0).new_tensor([0.0, *x[:, 1:].mean(0).tolist()]))
    m = sae_metrics(sae, x)
    assert m["fvu"] < 1e-5
    assert m["fvu_per_dim"] == pytest.approx(3 / 4, abs=1e-3)
