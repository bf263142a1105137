"""How well an SAE reconstructs held-out activations and how sparse its code is (LFP App. F)."""

from __future__ import annotations

import math

import torch

from .model import SparseAutoencoder, as_batch


@torch.no_grad()
def sae_metrics(sae: SparseAutoencoder, x, batch_size: int = 4096) -> dict[str, float]:
    """Reconstruction and sparsity of `sae` on activations x.

    x: a tensor [n, d_in] (split into `batch_size` chunks) or an iterable of such batches.
    Returns mse (mean over elements, in model units), fvu (sum of squared errors / sum of
    squared deviations of x from its per-dimension mean), fvu_per_dim (the same ratio per
    dimension, averaged over dimensions that vary: one huge dimension cannot hide the rest), l0 (mean number of active codes
    per example, the paper's "true sparsity"), l1 (mean per-example L1), dead_fraction
    (features never active on x) and n (examples).
    """
    device = next(sae.parameters()).device
    chunks = x.split(batch_size) if isinstance(x, torch.Tensor) else x
    l0 = l1 = 0.0
    n = 0
    sse_d = None  # [d_in] float64 squared error per dimension
    sum_x = sumsq_x = None  # [d_in], float64 so the streaming variance does not cancel
    ever_active = torch.zeros(sae.d_hidden, dtype=torch.bool, device=device)  # [d_hidden]
    for chunk in chunks:
        xb = as_batch(chunk, sae.d_in, device)  # [batch, d_in]
        x_hat, codes = sae(xb)
        active = codes > 0  # [batch, d_hidden]
        err = ((x_hat - xb) ** 2).sum(0, dtype=torch.float64)  # [d_in]
        sse_d = err if sse_d is None else sse_d + err
        l0 += float(active.sum())
        l1 += float(codes.abs().sum(dtype=torch.float64))
        ever_active |= active.any(dim=0)
        x64 = xb.double()
        sum_x = x64.sum(0) if sum_x is None else sum_x + x64.sum(0)
        sumsq_x = (x64**2).sum(0) if sumsq_x is None else sumsq_x + (x64**2).sum(0)
        n += xb.shape[0]
    if n == 0:
        raise ValueError("sae_metrics got no examples")
    sst_d = sumsq_x - sum_x**2 / n  # [d_in]
    sse, sst = float(sse_d.sum()), float(sst_d.sum())
    varying = sst_d > 1e-12 * max(sst, 1e-300)  # constant dimensions have no variance to explain
    return {
        "mse": sse / (n * sae.d_in),
        "fvu": sse / sst if sst > 0 else math.nan,
        "fvu_per_dim": float((sse_d[varying] / sst_d[varying]).mean()) if bool(varying.any()) else math.nan,
        "l0": l0 / n,
        "l1": l1 / n,
        "dead_fraction": float((~ever_active).float().mean()),
        "n": n,
    }
