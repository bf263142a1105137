"""Expertise of units: every unit is a binary classifier of positive vs negative sentences.

The anchor implementation (apple/ml-selfcond) calls sklearn's `average_precision_score` once
per unit in a process pool. That is correct but slow for millions of units. Here the same
number is computed for a whole block of units at once: each class's responses sorted (numpy,
in short chunks), then merged (`lensflow.expertlens.ap_kernel`, compiled with numba), so the result is
identical to sklearn (ties included) at a fraction of the cost; the same pass gives off_mean
and the on-percentiles from the sorted responses.

AP semantics (sklearn, "uninterpolated"): sort sentences by descending score; every distinct
score value is one threshold k (tied scores enter together); with TP_k, FP_k the counts at or
above threshold k, P_k = TP_k / (TP_k + FP_k), R_k = TP_k / n_pos, and
    AP = sum_k (R_k - R_{k-1}) * P_k.
Grouped per positive: each positive adds P at its own score's threshold, divided by n_pos.
Degenerate cases, chosen to match sklearn 1.9 exactly:
- no positives: AP = 0.0 (sklearn warns "No positive class found in y_true" and returns 0.0);
  we emit one UserWarning per call, not one per unit.
- all positives: AP = 1.0.
- constant scores: one threshold, AP = n_pos / n (chance level).
- NaN or +-inf anywhere in the scores: ValueError (sklearn rejects non-finite scores too).
"""

import warnings
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

# Default threshold grid for expert counts, as in the anchor code: linspace(0.5, 1, 501).
DEFAULT_THRESHOLDS = np.linspace(0.5, 1.0, 501)

# Units per block. The block working set is two [units, sentences] arrays of the scores' dtype
# (sort keys and a merge buffer): ~16 MB for 2000 float32 sentences x 1024 units, per thread.
DEFAULT_CHUNK = 1024

# Longest sort chunk in bytes: numpy's SIMD sort (x86-simd-sort) sorts rows of up to 512 float32
# / 256 float64 with sorting networks, ~5x faster per element than longer rows (measured:
# tests/benchmarks/RESULTS.md); longer classes are sorted in chunks and merged.
SORT_CHUNK_BYTES = 2048


def _check_inputs(scores, labels, rows=None):
    """Validate and normalise; returns (scores [N, u], labels [n] bool, rows [n] int64).

    rows: the sentences' row positions in scores (None: every row, n = N).
    """
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[:, None]  # a single unit
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n_sentences, n_units], got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        # ints/bools: float64 holds every int up to 2**53 exactly, so ties are preserved
        scores = scores.astype(np.float64)
    elif scores.dtype.itemsize < 4:
        scores = scores.astype(np.float32)  # float16: exact in float32
    elif scores.dtype.itemsize > 8:
        raise ValueError(f"scores dtype {scores.dtype} not supported (float16/32/64)")
    if not scores.dtype.isnative:
        scores = scores.astype(scores.dtype.newbyteorder("="))  # the compiled loops read native order
    if rows is None:
        rows = np.arange(scores.shape[0])
    rows = np.asarray(rows)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"rows must be 1-D integer row positions, got {rows.dtype} of shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= scores.shape[0]):
        raise ValueError(f"rows must lie in [0, {scores.shape[0]}), got {rows.min()}..{rows.max()}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != rows.size:
        raise ValueError(
            f"labels must be [n_sentences]={rows.size}, got shape {labels.shape}"
        )
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean or 0/1")
        labels = labels.astype(bool)
    if rows.size == 0:
        raise ValueError("need at least one sentence")
    return scores, labels, rows.astype(np.int64, copy=False)


def average_precision(scores, labels, chunk_size=DEFAULT_CHUNK, threads=1):
    """Per-unit average precision, identical to sklearn's `average_precision_score`.

    scores: [n_sentences, n_units] float (pooled unit responses; a 1-D array is one unit).
    labels: [n_sentences] bool, True = positive sentence.
    chunk_size: units processed per block (memory: ~2 x sentences x chunk_size scores).
    threads: blocks of units computed at once, one per thread (None: Python's default pool size).
    Returns [n_units] float64. See the module docstring for the degenerate cases.
    """
    return _expertise(scores, labels, chunk_size, threads)[0]


def _expertise(scores, labels, chunk_size, threads, rows=None):
    """[4, n_units] float64: ap, off_mean, on_p50, on_p90 (see `expertise_table`)."""
    from . import ap_kernel  # numba: compiled (or loaded from its cache) on first use

    scores, labels, rows = _check_inputs(scores, labels, rows)
    n, n_units = rows.size, scores.shape[1]
    n_pos = int(labels.sum())
    out = np.full((4, n_units), np.nan)  # [stat, n_units]
    if n_pos == 0:
        # sklearn warns "No positive class found in y_true" and returns 0.0; we warn once
        warnings.warn("No positive sentences: AP set to 0.0 for every unit (as sklearn does).")
        for lo in range(0, n_units, chunk_size):
            block = scores[rows, lo : lo + chunk_size]  # [n, u]
            if not np.isfinite(block).all():
                raise ValueError("scores contain NaN or inf; AP is undefined")
            out[1, lo : lo + chunk_size] = block.mean(axis=0, dtype=np.float64)
        out[0] = 0.0
        return out
    n_neg = n - n_pos
    layout = _layout(n_pos, n_neg, scores.dtype)
    order = np.concatenate([rows[labels], rows[~labels]])  # [n] row positions, positives first
    q_lo, q_gamma = _percentile_weights(n_pos, (50, 90))
    buffers = threading.local()  # each thread's keys and merge buffer, reused from block to block

    def block(lo):  # one block of units; runs on a worker thread (numpy's sort and the kernels drop the GIL)
        u = min(chunk_size, n_units - lo)
        u_pad = -(-u // ap_kernel.LANES) * ap_kernel.LANES  # whole groups of LANES rows
        if getattr(buffers, "keys", None) is None or buffers.keys.shape[0] < u_pad:
            buffers.keys = np.empty((u_pad, layout["width"]), scores.dtype)  # [u_pad, slots]
            buffers.spare = np.empty_like(buffers.keys)
        keys, spare = buffers.keys[:u_pad], buffers.spare[:u_pad]
        keys[:, layout["sentinels"]] = np.inf
        if ap_kernel.gather_rows(scores, order, layout["dest"], lo, keys):
            raise ValueError("scores contain NaN or inf; AP is undefined")
        keys.reshape(u_pad, -1, layout["chunk_len"]).sort(axis=-1)  # every chunk, in place
        stats = np.empty((4, u_pad))  # [stat, u_pad]
        ap_kernel.expertise_rows(keys, spare, n_pos, n_neg, layout["pos_chunks"],
                                 layout["neg_chunks"], layout["chunk_len"], q_lo, q_gamma, stats)
        out[:, lo : lo + u] = stats[:, :u]

    starts = range(0, n_units, chunk_size)
    if threads == 1 or len(starts) == 1:
        for lo in starts:
            block(lo)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(block, starts))  # list(): re-raises a block's error here
    return out


def _layout(n_pos, n_neg, dtype):
    """Slots of one row: each class in chunks of chunk_len slots, every chunk ending in >= 1 +inf.

    Returns dict: chunk_len, pos_chunks, neg_chunks, width (slots per row), dest [n] (slot of
    the i-th sentence, positives first), sentinels [width] bool (slots left +inf).
    """
    cap = SORT_CHUNK_BYTES // np.dtype(dtype).itemsize - 1  # values per chunk at most
    n_chunks = -(-max(n_pos, n_neg) // cap)
    per_chunk = -(-max(n_pos, n_neg) // n_chunks)  # balanced chunks for the larger class
    pos_chunks, neg_chunks = (max(1, -(-c // per_chunk)) for c in (n_pos, n_neg))
    chunk_len = per_chunk + 1
    j_pos, j_neg = np.arange(n_pos), np.arange(n_neg)
    dest = np.concatenate([j_pos // per_chunk * chunk_len + j_pos % per_chunk,
                           (pos_chunks + j_neg // per_chunk) * chunk_len + j_neg % per_chunk])  # [n]
    width = (pos_chunks + neg_chunks) * chunk_len
    sentinels = np.ones(width, dtype=bool)
    sentinels[dest] = False
    return {"chunk_len": chunk_len, "pos_chunks": pos_chunks, "neg_chunks": neg_chunks, "width": width,
            "dest": dest.astype(np.int64), "sentinels": sentinels}


def _percentile_weights(n, percentiles):
    """numpy's 'linear' percentile of n sorted values: lower index and weight per percentile.

    The same arithmetic as numpy (virtual index n*q + (1 - q) - 1), so the result matches
    np.percentile to the last bits.
    """
    q = np.asarray(percentiles, dtype=np.float64) / 100  # [k]
    virtual = n * q + (1 - q) - 1  # numpy's _compute_virtual_index with alpha = beta = 1, same rounding
    lower = np.floor(virtual)
    lower_i = np.clip(lower, 0, n - 1).astype(np.int64)
    gamma = np.where(lower_i >= n - 1, 0.0, virtual - lower)  # at the top: the last value itself
    return lower_i, gamma


def expertise_table(scores, labels, unit_index=None, chunk_size=DEFAULT_CHUNK, threads=1, rows=None):
    """Per-unit expertise summary, the columns of the anchor CSV.

    scores: [n_sentences, n_units]; labels: [n_sentences] bool.
    rows: [n_sentences] row positions of the sentences in scores, which may then hold more rows
      (e.g. a module's responses for a whole sentence bank; read in place, no copy). None: all.
    unit_index: DataFrame with one row per unit (e.g. module, layer, unit); its columns are
      copied to the front of the output. None -> a single `unit` column 0..n_units-1.
    threads: blocks of units computed at once (see `average_precision`).
    Returns a DataFrame [n_units rows] with the identification columns plus
      ap      average precision (see `average_precision`)
      off_mean  mean response on negative sentences (NaN if there are none)
      on_p50  median response on positive sentences (NaN if there are none)
      on_p90  90th percentile (numpy linear interpolation) on positives (NaN if none)
    """
    scores, labels, rows = _check_inputs(scores, labels, rows)
    n_units = scores.shape[1]
    if unit_index is None:
        unit_index = pd.DataFrame({"unit": np.arange(n_units)})
    elif len(unit_index) != n_units:
        raise ValueError(f"unit_index has {len(unit_index)} rows, scores have {n_units} units")
    ap, off_mean, on_p50, on_p90 = _expertise(scores, labels, chunk_size, threads, rows)  # [n_units] each
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
