"""Expertise in torch: the numbers of `lensflow.expertlens.expertise` (numba, CPU) for a block on CPU or CUDA.

A second implementation of the same four statistics per unit -- exact AP (sklearn
`average_precision_score` semantics, ties included), off_mean, on_p50, on_p90 (numpy 'linear'
percentiles) -- for a `[sentences, units]` block that already lives on a device (the streaming
expertise path pools responses on the GPU and computes these there, `lensflow.expertlens.expertise_stream`).
Tested against sklearn and against the numba kernel (tests/expertlens/test_expertise_torch.py).

Method, per chunk of units (the block transposed to [units, sentences], each class sorted):
  for the i-th positive (ascending) with score s,
    pos_ge = positives with score >= s = n_pos - searchsorted(positives, s, left)
    neg_ge = negatives with score >= s = n_neg - searchsorted(negatives, s, left)
  AP = mean_i pos_ge / (pos_ge + neg_ge)
i.e. every positive adds the precision at its own tie group's threshold (everything tied with it
counts as above the threshold), which is sklearn's step-wise AP regrouped per positive -- the
formula the numba kernel evaluates with a merge. Comparisons are made in the input's dtype
(float32 stays float32: ties are exactly those of the stored values); sums and ratios in float64.
Degenerate cases as `lensflow.expertlens.expertise`: no positives -> AP 0.0 (one warning), off_mean = mean of
all, percentiles NaN; no negatives -> AP 1.0, off_mean NaN; NaN/inf anywhere -> ValueError.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from .expertise import _percentile_weights

# Bytes of temporaries per (unit, sentence) cell of a chunk: the class copies, sort values and
# int64 indices, two int64 searchsorted results and float64 ratios (upper bound, measured ~30-40).
BYTES_PER_CELL = 48
DEFAULT_CHUNK_BYTES = 512 * 2**20  # per chunk of units; the caller may give more on a large GPU


def _as_tensor(scores) -> torch.Tensor:
    """[n, u] float tensor; float16/bfloat16 widened to float32 (exact), ints/bools to float64."""
    x = scores if isinstance(scores, torch.Tensor) else torch.as_tensor(np.asarray(scores))
    if x.ndim == 1:
        x = x[:, None]  # a single unit
    if x.ndim != 2:
        raise ValueError(f"scores must be [n_sentences, n_units], got shape {tuple(x.shape)}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    elif not x.is_floating_point():
        x = x.double()  # every int up to 2**53 exact: ties preserved
    return x


def _as_labels(labels, n: int, device) -> torch.Tensor:
    y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.array(labels))  # a copy: writable
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must be [n_sentences]={n}, got shape {tuple(y.shape)}")
    if y.dtype != torch.bool:
        if not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("labels must be boolean or 0/1")
        y = y != 0
    return y.to(device)


def expertise_stats(scores, labels, chunk_units: int | None = None,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """[4, n_units] float64 on the scores' device: ap, off_mean, on_p50, on_p90 per unit.

    scores: [n_sentences, n_units] tensor (any device) or array; labels: [n_sentences] bool / 0-1.
    chunk_units: units per chunk (None: as many as fit in chunk_bytes of temporaries).
    """
    x = _as_tensor(scores)
    n, n_units = x.shape
    if n == 0:
        raise ValueError("need at least one sentence")
    y = _as_labels(labels, n, x.device)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("scores contain NaN or inf; AP is undefined")
    out = torch.full((4, n_units), float("nan"), dtype=torch.float64, device=x.device)
    n_pos = int(y.sum())
    n_neg = n - n_pos
    if n_pos == 0:
        warnings.warn("No positive sentences: AP set to 0.0 for every unit (as sklearn does).")
        out[0] = 0.0
        out[1] = x.sum(0, dtype=torch.float64) / n
        return out
    pos_rows = torch.nonzero(y).squeeze(1)  # [n_pos]
    neg_rows = torch.nonzero(~y).squeeze(1)  # [n_neg]
    (lo50, lo90), (g50, g90) = _percentile_weights(n_pos, (50, 90))
    if chunk_units is None:
        chunk_units = max(1, chunk_bytes // (BYTES_PER_CELL * n))
    for lo in range(0, n_units, chunk_units):
        hi = min(n_units, lo + chunk_units)
        pos = x[pos_rows, lo:hi].T.contiguous().sort(dim=1).values  # [u, n_pos] ascending
        pos_ge = n_pos - torch.searchsorted(pos, pos, side="left")  # [u, n_pos] positives >= each
        if n_neg:
            neg = x[neg_rows, lo:hi].T.contiguous().sort(dim=1).values  # [u, n_neg]
            neg_ge = n_neg - torch.searchsorted(neg, pos, side="left")  # [u, n_pos] negatives >= each
            out[1, lo:hi] = neg.sum(1, dtype=torch.float64) / n_neg
            del neg
        else:
            neg_ge = torch.zeros_like(pos_ge)
        pos_ge = pos_ge.double()
        out[0, lo:hi] = (pos_ge / (pos_ge + neg_ge)).sum(1) / n_pos
        del pos_ge, neg_ge
        out[2, lo:hi] = _lerp(pos, int(lo50), float(g50))
        out[3, lo:hi] = _lerp(pos, int(lo90), float(g90))
    return out


def _lerp(run: torch.Tensor, lo: int, gamma: float) -> torch.Tensor:
    """numpy's 'linear' percentile from ascending rows run [u, m]: the arithmetic of
    ap_kernel._lerp (numpy's own), so the float64 result matches np.percentile."""
    a = run[:, lo].double()
    if gamma <= 0:
        return a
    b = run[:, lo + 1].double()
    d = b - a
    return b - d * (1.0 - gamma) if gamma >= 0.5 else a + d * gamma


def expertise_table_torch(scores, labels, unit_index=None, device=None, **kw) -> pd.DataFrame:
    """`lensflow.expertlens.expertise.expertise_table`'s DataFrame (ap, off_mean, on_p50, on_p90, float64),
    computed by `expertise_stats` on `device` (default: where the scores are; arrays: CPU)."""
    x = _as_tensor(scores)
    if device is not None:
        x = x.to(device)
    n_units = x.shape[1]
    if unit_index is None:
        unit_index = pd.DataFrame({"unit": np.arange(n_units)})
    elif len(unit_index) != n_units:
        raise ValueError(f"unit_index has {len(unit_index)} rows, scores have {n_units} units")
    stats = expertise_stats(x, labels, **kw).cpu().numpy()  # [4, n_units]
    out = unit_index.reset_index(drop=True).copy()
    for i, name in enumerate(("ap", "off_mean", "on_p50", "on_p90")):
        out[name] = stats[i]
    return out
