"""Compiled inner loops of the expertise (numba): a merge, not a sort, per unit.

`lensflow.expertlens.expertise` lays each block of units out as rows [unit, chunked sentences] -- the
positive sentences' responses in chunks, then the negatives' -- and numpy sorts every chunk
(numpy's SIMD sort is ~5x faster per element on rows of <= 2 KiB than on longer rows). Here each
row's sorted chunks are merged into one sorted run per class, and one last merge of the positives
against the negatives counts, for every positive, the negatives strictly below it: all that the
AP needs. Why numba: that merge is a loop with a data-dependent step, which numpy cannot vectorise;
running LANES rows side by side in one loop hides the latency of each row's dependent loads.
The kernels release the GIL (nogil), so the caller runs blocks of units on threads; they are
serial themselves (no parallel=True: simpler to compile and to cache safely across processes).

Layout of one class inside a row (the same for every row of a block): `n_chunks` chunks of
`chunk_len` slots, chunk j holding `real_j = min(chunk_len - 1, count - j * (chunk_len - 1))`
values followed by at least one +inf. The +inf ends a run, so a merge never reads past it and
needs no bounds test. Sorted, the class is one run of `count` values then +inf.
"""

import numba
import numpy as np

LANES = 4  # rows merged side by side in one loop (independent work for the CPU to overlap)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def gather_rows(scores, order, dest, lo, keys):
    """keys[r, dest[i]] = scores[order[i], lo + r] for the block's units; pad rows get 0.

    scores: [n, U] finite-checked here; order [n] sentence rows (positives first); dest [n] slot of
    each in the chunk layout; keys [u_pad, L] (slots not in dest are the caller's +inf).
    Returns the number of non-finite responses seen (0 means the block is valid).
    """
    u_pad = keys.shape[0]
    u = min(u_pad, scores.shape[1] - lo)
    n = order.size
    bad = 0
    for i in range(n):  # sentence by sentence: each reads one contiguous row segment
        row = scores[order[i]]  # [U]
        col = dest[i]
        for r in range(u):
            v = row[lo + r]
            if not np.isfinite(v):
                bad += 1
            keys[r, col] = v
        for r in range(u, u_pad):
            keys[r, col] = 0.0
    return bad


@numba.njit(nogil=True, inline="always", boundscheck=False)
def _merge(src, dst, r0, a, ra, b, rb):
    """Merge runs src[r, a:a+ra] and src[r, b:b+rb] (each followed by +inf) into dst[r, a:...]."""
    ia = np.empty(LANES, np.int64)
    ib = np.empty(LANES, np.int64)
    for lane in range(LANES):
        ia[lane] = a
        ib[lane] = b
    for step in range(ra + rb):
        for lane in range(LANES):
            r = r0 + lane
            x = src[r, ia[lane]]
            y = src[r, ib[lane]]
            take_b = y < x  # ties: a first (order inside a tie does not matter)
            dst[r, a + step] = y if take_b else x
            ib[lane] += take_b
            ia[lane] += 1 - take_b
    for lane in range(LANES):
        dst[r0 + lane, a + ra + rb] = np.inf


@numba.njit(nogil=True, inline="always", boundscheck=False)
def _sort_class(keys, spare, r0, start, count, n_chunks, chunk_len):
    """Merge a class's sorted chunks pairwise until one run is left; returns the buffer holding it.

    Runs are (offset, real values); merging two neighbours keeps the left one's offset (a merged
    run fits: the two runs' slots are adjacent and each held at least one +inf).
    """
    offs = np.empty(n_chunks, np.int64)
    real = np.empty(n_chunks, np.int64)
    for j in range(n_chunks):
        offs[j] = start + j * chunk_len
        real[j] = min(chunk_len - 1, count - j * (chunk_len - 1))
    src, dst = keys, spare
    runs = n_chunks
    while runs > 1:
        for j in range(0, runs - 1, 2):
            _merge(src, dst, r0, offs[j], real[j], offs[j + 1], real[j + 1])
            k = j // 2
            offs[k], real[k] = offs[j], real[j] + real[j + 1]
        if runs % 2:  # the odd run out is copied as is
            j = runs - 1
            for lane in range(LANES):
                for t in range(real[j] + 1):
                    dst[r0 + lane, offs[j] + t] = src[r0 + lane, offs[j] + t]
            k = j // 2
            offs[k], real[k] = offs[j], real[j]
        runs = (runs + 1) // 2
        src, dst = dst, src
    return src


@numba.njit(nogil=True, inline="always", boundscheck=False)
def _lerp(run, lo, gamma):
    """numpy's linear-interpolation percentile between run[lo] and run[lo + 1]."""
    a = np.float64(run[lo])
    b = np.float64(run[lo + 1]) if gamma > 0 else a
    d = b - a
    return b - d * (1.0 - gamma) if gamma >= 0.5 else a + d * gamma


@numba.njit(nogil=True, cache=True, boundscheck=False)
def expertise_rows(keys, spare, n_pos, n_neg, pos_chunks, neg_chunks, chunk_len, q_lo, q_gamma, out):
    """AP, off_mean and two on-percentiles per row from its sorted chunks.

    keys, spare: [u_pad, L] (u_pad a multiple of LANES); positives at slots [0, pos_chunks *
    chunk_len), negatives after. n_pos >= 1. q_lo [2] int, q_gamma [2] float: numpy's index and
    weight of the 50th and 90th percentile of n_pos values. out: [4, u_pad] float64, filled with
    ap, off_mean (NaN without negatives), on_p50, on_p90.
    """
    u_pad = keys.shape[0]
    neg0 = pos_chunks * chunk_len
    for g in range(u_pad // LANES):
        r0 = g * LANES
        pos = _sort_class(keys, spare, r0, 0, n_pos, pos_chunks, chunk_len)  # [u_pad, L] run at 0
        neg = _sort_class(keys, spare, r0, neg0, n_neg, neg_chunks, chunk_len)  # run at neg0
        # below[lane, i] = negatives strictly below the i-th smallest positive, by one merge
        below = np.empty((LANES, n_pos + 1), np.int64)
        ip = np.zeros(LANES, np.int64)
        kn = np.zeros(LANES, np.int64)
        for step in range(n_pos + n_neg):
            for lane in range(LANES):
                r = r0 + lane
                take_neg = neg[r, neg0 + kn[lane]] < pos[r, ip[lane]]  # ties: the positive first
                below[lane, ip[lane]] = kn[lane]
                kn[lane] += take_neg
                ip[lane] += 1 - take_neg
        for lane in range(LANES):
            r = r0 + lane
            # AP = mean over positives of precision at the positive's score threshold, where
            # everything tied with it is above the threshold too: a = first positive of its tie
            ap = 0.0
            first = 0
            for i in range(n_pos):
                if i > 0 and pos[r, i] != pos[r, i - 1]:
                    first = i
                pos_ge = n_pos - first  # positives >= score
                ap += pos_ge / (pos_ge + n_neg - below[lane, i])
            out[0, r] = ap / n_pos
            total = 0.0
            for k in range(n_neg):
                total += neg[r, neg0 + k]
            out[1, r] = total / n_neg if n_neg > 0 else np.nan
            out[2, r] = _lerp(pos[r], q_lo[0], q_gamma[0])
            out[3, r] = _lerp(pos[r], q_lo[1], q_gamma[1])
