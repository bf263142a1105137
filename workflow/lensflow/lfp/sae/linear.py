"""The best linear code of a given size, as an SAE: the reference for the sparse-code check (issue 16).

A tied ReLU SAE with at least 2k features can hold any k-dimensional affine subspace exactly: each
principal direction v and its negative are two features (encoder = decoder^T, so a code is the
projection ReLU(+-v.(x - mu))), the decoder bias is the mean, and k of the 2k codes are active on
every token. So the top-k principal subspace of the training activations, built as that SAE and
measured with the same `sae_metrics` on the same held-out tokens, is a code the paper's own
architecture can express at L0 = k without any sparsity. Where it meets the target and the trained
SAE does not, the L1 objective is what misses it; where even it leaves most of the variance, the
target asks a sparse code to beat the best linear code of its size by far.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .metrics import sae_metrics
from .model import SparseAutoencoder, as_batch


@torch.no_grad()
def principal_subspace(batches: Iterable, d_in: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [d_in], top-k principal directions [k, d_in], rows unit, by variance) of one pass over
    `batches` ([batch, d_in] each), accumulated in float64 so a large-norm dimension does not cancel."""
    n, total, cross = 0, torch.zeros(d_in, dtype=torch.float64), torch.zeros(d_in, d_in, dtype=torch.float64)
    for batch in batches:
        x = as_batch(batch, d_in, "cpu").double()  # [batch, d_in]
        n += x.shape[0]
        total += x.sum(0)
        cross += x.T @ x  # [d_in, d_in]
    if n < 2:
        raise ValueError(f"principal_subspace needs at least 2 examples, got {n}")
    mean = total / n
    cov = (cross - n * torch.outer(mean, mean)) / (n - 1)  # [d_in, d_in]
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues, columns are eigenvectors
    return mean, vectors[:, -k:].flip(1).T.contiguous()  # [k, d_in], largest variance first


def linear_code_sae(mean: torch.Tensor, directions: torch.Tensor, d_hidden: int,
                    input_scale: float = 1.0) -> SparseAutoencoder:
    """The tied SAE of width d_hidden (>= 2k) that reconstructs x as mean + its projection on the k
    `directions` [k, d_in] (module docstring); the unused features never fire."""
    k, d_in = directions.shape
    if d_hidden < 2 * k:
        raise ValueError(f"a tied ReLU SAE needs 2k = {2 * k} features to hold a {k}-dimensional subspace, "
                         f"got d_hidden {d_hidden}")
    sae = SparseAutoencoder(d_in, d_hidden, tied=True, input_scale=input_scale)
    v = directions.float()  # [k, d_in]
    mu = (mean * input_scale).float()  # [d_in], scaled units
    w = torch.zeros(d_hidden, d_in)  # [d_hidden, d_in]
    b = torch.full((d_hidden,), -1.0)  # unused features: code ReLU(0 - 1) = 0
    w[:k], w[k:2 * k] = v, -v
    b[:k], b[k:2 * k] = -(v @ mu), v @ mu  # code_j = ReLU(+-v_j . (s x - s mu))
    sae.W_E.data.copy_(w)
    sae.b_E.data.copy_(b)
    sae.b_D.data.copy_(mu)
    return sae


def linear_code_metrics(train: Iterable, heldout: Iterable, d_in: int, d_hidden: int, l0_fraction: float,
                        input_scale: float = 1.0) -> dict[str, float]:
    """{linear_k, linear_fvu, linear_fvu_per_dim, linear_l0}: the top-k principal subspace of `train`
    (k = floor(l0_fraction * d_hidden), at most d_hidden // 2 and d_in) as a tied SAE of width d_hidden,
    measured on `heldout` by sae_metrics (the SAEs' own held-out numbers)."""
    k = min(math.floor(l0_fraction * d_hidden + 1e-9), d_hidden // 2, d_in)
    if k < 1:
        raise ValueError(f"l0_fraction {l0_fraction} of {d_hidden} features leaves no component")
    mean, directions = principal_subspace(train, d_in, k)
    m = sae_metrics(linear_code_sae(mean, directions, d_hidden, input_scale), heldout)
    return {"linear_k": k, "linear_fvu": m["fvu"], "linear_fvu_per_dim": m["fvu_per_dim"], "linear_l0": m["l0"]}
