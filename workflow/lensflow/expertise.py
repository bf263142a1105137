"""Expertise of units: every unit is a binary classifier of positive vs negative sentences.

The anchor implementation (apple/ml-selfcond) calls sklearn's `average_precision_score` once
per unit in a process pool. That is correct but slow for millions of units. Here the same
number is computed for a whole block of units at once with one sort and a few cumulative sums,
so the result is identical to sklearn (ties included) but vectorised.

AP semantics (sklearn, "uninterpolated"): sort sentences by descending score; every distinct
score value is one threshold k (tied scores enter together); with TP_k, FP_k the counts at or
above threshold k, P_k = TP_k / (TP_k + FP_k), R_k = TP_k / n_pos, and
    AP = sum_k (R_k - R_{k-1}) * P_k.
Degenerate cases, chosen to match sklearn 1.9 exactly:
- no positives: AP = 0.0 (sklearn warns "No positive class found in y_true" and returns 0.0);
  we emit one UserWarning per call, not one per unit.
- all positives: AP = 1.0.
- constant scores: one threshold, AP = n_pos / n (chance level).
- NaN or +-inf anywhere in the scores: ValueError (sklearn rejects non-finite scores too).
"""

import warnings

import numpy as np
import pandas as pd

# Default threshold grid for expert counts, as in the anchor code: linspace(0.5, 1, 501).
DEFAULT_THRESHOLDS = np.linspace(0.5, 1.0, 501)

# Units per block. The block working set is ~40 bytes per (sentence, unit) cell
# (sort keys, labels, cumulative sums), i.e. ~80 MB for 2000 sentences x 1024 units.
DEFAULT_CHUNK = 1024


def _check_inputs(scores, labels):
    """Validate and normalise (scores, labels); returns (scores [n, u], labels [n] bool)."""
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[:, None]  # a single unit
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n_sentences, n_units], got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        # ints/bools: float64 holds every int up to 2**53 exactly, so ties are preserved
        scores = scores.astype(np.float64)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(
            f"labels must be [n_sentences]={scores.shape[0]}, got shape {labels.shape}"
        )
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean or 0/1")
        labels = labels.astype(bool)
    if scores.shape[0] == 0:
        raise ValueError("need at least one sentence")
    return scores, labels


def average_precision(scores, labels, chunk_size=DEFAULT_CHUNK):
    """Per-unit average precision, identical to sklearn's `average_precision_score`.

    scores: [n_sentences, n_units] float (pooled unit responses; a 1-D array is one unit).
    labels: [n_sentences] bool, True = positive sentence.
    chunk_size: units processed per block; bounds memory for millions of units
      (~40 bytes per sentence x unit cell of a block).
    Returns [n_units] float64. See the module docstring for the degenerate cases.
    """
    scores, labels = _check_inputs(scores, labels)
    n_units = scores.shape[1]
    n_pos = int(labels.sum())
    ap = np.zeros(n_units, dtype=np.float64)  # [n_units]
    for lo in range(0, n_units, chunk_size):
        block = np.ascontiguousarray(scores[:, lo : lo + chunk_size].T)  # [u, n] unit-major
        if not np.isfinite(block).all():
            raise ValueError("scores contain NaN or inf; AP is undefined")
        if n_pos > 0:
            ap[lo : lo + chunk_size] = _ap_sorted(*_sort_block(block, labels), n_pos)
    if n_pos == 0:
        # sklearn warns "No positive class found in y_true" and returns 0.0; we warn once
        warnings.warn("No positive sentences: AP set to 0.0 for every unit (as sklearn does).")
    return ap


def _sort_block(s, labels):
    """Sort each unit's sentences by ascending score.

    s: [u, n] finite scores; labels: [n] bool.
    Returns (keys [u, n], y [u, n] bool): keys are the sorted scores (or an order-preserving,
    tie-preserving transform of them), y the labels in the same order. The order inside a run
    of tied scores is arbitrary (so no stable sort is needed): `_ap_sorted` only looks at
    where runs start.
    """
    with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf -> not exact
        s32 = s.astype(np.float32, copy=False)
    if s.dtype.itemsize <= 4 or np.array_equal(s32, s):
        # Fast path (float32/16 data, or float64 that float32 holds exactly): sort values, not
        # indices -- ~2x cheaper than argsort + gathers. The float bits become an int32 with
        # the same order (negatives: flip the magnitude bits), and the label rides along as
        # the lowest bit of an int64 key, so one value sort carries it.
        i = (s32 + np.float32(0)).view(np.int32)  # [u, n]; +0 turns -0.0 into +0.0 (they tie)
        i ^= (i >> 31) & np.int32(0x7FFFFFFF)
        key = i.astype(np.int64)  # [u, n]
        key <<= 1
        key |= labels
        key.sort(axis=1)
        return key >> 1, (key & 1).astype(bool)
    order = np.argsort(s, axis=1)  # [u, n]
    return np.take_along_axis(s, order, axis=1), labels[order]


def _ap_sorted(keys, y, n_pos):
    """AP from ascending-sorted keys [u, n] and labels y [u, n] bool; returns [u] float64.

    Each positive contributes the precision at its own score's threshold,
    (#positives >= score) / (#sentences >= score), and AP is the mean over positives -- the
    same sum as sklearn's sum_k (R_k - R_{k-1}) P_k, grouped per positive. Without ties the
    positive at sorted position i has n - i sentences and n_pos + 1 - cum_i positives at or
    above it (cum_i = positives at positions <= i); units with ties go to `_ap_runs`.
    """
    u, n = keys.shape
    start = np.empty((u, n), dtype=bool)  # [u, n] True where a run of equal scores begins
    start[:, 0] = True
    np.not_equal(keys[:, 1:], keys[:, :-1], out=start[:, 1:])
    cum = np.cumsum(y, axis=1, dtype=np.int32)  # [u, n]
    ap = (((n_pos + 1) - cum) * y) @ (1.0 / (n - np.arange(n))) / n_pos  # [u]
    tied = np.flatnonzero(~start.all(axis=1))  # [t] units with at least one tie
    if tied.size:
        ap[tied] = _ap_runs(start[tied], y[tied], n_pos)
    return ap


def _ap_runs(start, y, n_pos):
    """AP per unit with ties, one term per run of tied scores (= one sklearn threshold).

    start, y: [t, n] run starts and labels in ascending score order. Works on the flattened
    block: a global running count of positives, read at the run starts, gives positives per
    run by differencing -- across unit boundaries too, since every unit begins a new run.
    """
    t, n = start.shape
    yf = y.ravel()  # [t * n]
    g = np.cumsum(yf, dtype=np.int64)  # [t * n] positives at flat positions <= j
    s = np.flatnonzero(start)  # [r] flat index of each run start
    before = g[s] - yf[s]  # [r] positives before the run (earlier units included)
    d = np.diff(before, append=g[-1])  # [r] positives inside the run
    unit, first = np.divmod(s, n)  # [r] each
    # earlier units hold unit * n_pos of `before`, so positives at or above the run are
    # n_pos * (unit + 1) - before; sentences at or above it are n - first
    precision = (n_pos * (unit + 1) - before) / (n - first)  # [r]
    return np.bincount(unit, weights=d * precision, minlength=t) / n_pos  # [t]


def expertise_table(scores, labels, unit_index=None, chunk_size=DEFAULT_CHUNK):
    """Per-unit expertise summary, the columns of the anchor CSV.

    scores: [n_sentences, n_units]; labels: [n_sentences] bool.
    unit_index: DataFrame with one row per unit (e.g. module, layer, unit); its columns are
      copied to the front of the output. None -> a single `unit` column 0..n_units-1.
    Returns a DataFrame [n_units rows] with the identification columns plus
      ap      average precision (see `average_precision`)
      off_mean  mean response on negative sentences (NaN if there are none)
      on_p50  median response on positive sentences (NaN if there are none)
      on_p90  90th percentile (numpy linear interpolation) on positives (NaN if none)
    """
    scores, labels = _check_inputs(scores, labels)
    n_units = scores.shape[1]
    if unit_index is None:
        unit_index = pd.DataFrame({"unit": np.arange(n_units)})
    elif len(unit_index) != n_units:
        raise ValueError(f"unit_index has {len(unit_index)} rows, scores have {n_units} units")
    ap = average_precision(scores, labels, chunk_size=chunk_size)  # [n_units]
    off_mean = np.full(n_units, np.nan)  # [n_units]
    on_p50 = np.full(n_units, np.nan)  # [n_units]
    on_p90 = np.full(n_units, np.nan)  # [n_units]
    has_neg, has_pos = (~labels).any(), labels.any()
    # Blocked like the AP so the positive/negative subsets never copy all units at once.
    for lo in range(0, n_units, chunk_size):
        sl = slice(lo, lo + chunk_size)
        block = scores[:, sl].astype(np.float64)  # [n, u]
        if has_neg:
            off_mean[sl] = block[~labels].mean(axis=0)
        if has_pos:
            on_p50[sl], on_p90[sl] = np.percentile(block[labels], [50, 90], axis=0)
    out = unit_index.reset_index(drop=True).copy()
    out["ap"] = ap
    out["off_mean"] = off_mean
    out["on_p50"] = on_p50
    out["on_p90"] = on_p90
    return out


def count_above(ap, thresholds=None):
    """Number of units with AP strictly greater than each threshold.

    ap: [n_units] AP values (NaNs are ignored); thresholds: [n_t], default DEFAULT_THRESHOLDS.
    Returns [n_t] int64 counts.
    """
    ap = np.asarray(ap, dtype=np.float64).ravel()
    ap = np.sort(ap[~np.isnan(ap)])  # [n_valid]
    t = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    # searchsorted(side="right") = number of values <= t, so the rest are > t
    return (ap.size - np.searchsorted(ap, t, side="right")).astype(np.int64)  # [n_t]
