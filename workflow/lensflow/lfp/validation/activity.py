"""Probe validation by feature activity (LFP paper §3.4, §4.2, Table 7).

The claim: features that the LLM labeller calls related to the fine-tuning task are active more
often on inputs where the probe predicts strong positive feedback (prediction > 3 in the paper)
than the average feature is. Table 7 reports, among those inputs, the activation rate averaged
over the related ("ablated") features vs averaged over ALL features of the dictionary.

Both rates are means over features of a per-feature rate, and every feature sees the same
inputs, so each equals the mean over inputs of a per-input fraction (related features active on
input i, all features active on input i). The bootstrap therefore resamples inputs and re-means
those per-input fractions -- paired, so the difference gets its own interval.
Undefined cases (no high inputs, no related features) give NaN and a `reason`, never a number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def _boot_means(per_input: np.ndarray, n_boot: int, seed: int, ci: float) -> np.ndarray:
    """[k, 2] percentile CI rows for the mean of each column of per_input [n, k] (inputs resampled
    together: one np.random.default_rng(seed), indices [n_boot, n])."""
    n, k = per_input.shape
    if n == 0:
        return np.full((k, 2), np.nan)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # [n_boot, n]
    boot = per_input[idx].mean(axis=1)  # [n_boot, k]
    return np.percentile(boot, [50 * (1 - ci), 50 * (1 + ci)], axis=0).T  # [k, 2]


def _rates(active: np.ndarray, related: np.ndarray, prefix: str, n_boot: int, seed: int,
           ci: float) -> dict:
    """Related-feature rate, average-feature rate, their difference and ratio on the rows of
    active [n, n_features] (bool), each with a bootstrap CI over rows."""
    avg = active.mean(axis=1) if active.shape[0] else np.zeros(0)  # [n] fraction of all features active
    if related.size:
        rel = active[:, related].mean(axis=1)  # [n] fraction of related features active
    else:
        rel = np.full(active.shape[0], np.nan)
    per_input = np.column_stack([rel, avg, rel - avg])  # [n, 3]
    out = {}
    means = per_input.mean(axis=0) if active.shape[0] else np.full(3, np.nan)  # [3]
    cis = _boot_means(per_input, n_boot, seed, ci)  # [3, 2]; NaN columns stay NaN
    for j, name in enumerate(("related_rate", "average_rate", "diff")):
        out[f"{name}_{prefix}"] = float(means[j])
        out[f"{name}_{prefix}_ci_low"], out[f"{name}_{prefix}_ci_high"] = (float(v) for v in cis[j])
    r, a = out[f"related_rate_{prefix}"], out[f"average_rate_{prefix}"]
    out[f"ratio_{prefix}"] = r / a if np.isfinite(r) and a > 0 else np.nan
    return out


def activity_when_high(codes: np.ndarray, pred: np.ndarray, threshold: float, related,
                       n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """Table 7: how often the related features are active (code > 0) on inputs with pred > threshold,
    vs the average feature, with bootstrap CIs over those inputs; the same on all inputs.

    codes: [n, n_features] probe inputs (SAE codes); pred: [n] probe predictions;
    related: column indices of the task-related features (related_columns).
    Keys: n, n_high, n_related, n_features, threshold, n_boot, seed, reason (None when all is
    defined), and for suffix s in ("high", "all"): related_rate_s, average_rate_s, diff_s
    (related - average), each with _ci_low/_ci_high, and ratio_s (related / average).
    """
    codes = np.asarray(codes, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if codes.ndim != 2 or codes.shape[0] != pred.size:
        raise ValueError(f"codes must be [n, n_features] with n = len(pred) = {pred.size}; got {codes.shape}")
    related = np.unique(np.asarray(related, dtype=np.int64).ravel())  # [n_related]
    if related.size and (related[0] < 0 or related[-1] >= codes.shape[1]):
        raise ValueError(f"related columns must lie in [0, {codes.shape[1]}); got {related.min()}..{related.max()}")
    active = codes > 0  # [n, n_features]
    high = pred > threshold  # [n]
    reasons = []
    if not high.any():
        reasons.append(f"no input has a probe prediction > {threshold} (max {pred.max() if pred.size else 'n/a'})")
    if related.size == 0:
        reasons.append("no task-related features")
    out = {"n": int(pred.size), "n_high": int(high.sum()), "n_related": int(related.size),
           "n_features": int(codes.shape[1]), "threshold": float(threshold), "n_boot": n_boot, "seed": seed,
           "reason": "; ".join(reasons) or None}
    out |= _rates(active[high], related, "high", n_boot, seed, ci)
    out |= _rates(active, related, "all", n_boot, seed, ci)
    return out


def related_columns(layers: Sequence[int], d_hidden: Mapping[int, int] | Sequence[int],
                    related_features: pd.DataFrame) -> np.ndarray:
    """Sorted column indices of the related features in the probe's feature space.

    The probe input concatenates each layer's codes in the order of `layers`, so feature f of
    layers[i] sits at sum(widths of layers[:i]) + f. d_hidden: {layer: width} or widths in the
    order of `layers`. related_features: (layer, feature, related) with `related` boolean (or
    0/1); rows of layers outside `layers` or features beyond the width raise ValueError.
    """
    layers = [int(x) for x in layers]
    widths = [int(d_hidden[x]) for x in layers] if isinstance(d_hidden, Mapping) else [int(w) for w in d_hidden]
    if len(widths) != len(layers):
        raise ValueError(f"{len(widths)} widths for {len(layers)} layers")
    offset = dict(zip(layers, np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)))
    width = dict(zip(layers, widths))
    flag = related_features["related"]
    if not (pd.api.types.is_bool_dtype(flag) or pd.api.types.is_integer_dtype(flag)):
        raise TypeError(f"`related` must be boolean or 0/1, got dtype {flag.dtype}")
    rel = related_features[flag.astype(bool)]
    cols = []
    for layer, feature in zip(rel["layer"].astype(int), rel["feature"].astype(int)):
        if layer not in offset:
            raise ValueError(f"related feature of layer {layer}, which is not among the probe's layers {layers}")
        if not 0 <= feature < width[layer]:
            raise ValueError(f"feature {feature} out of range for layer {layer} (width {width[layer]})")
        cols.append(offset[layer] + feature)
    return np.unique(np.asarray(cols, dtype=np.int64))
