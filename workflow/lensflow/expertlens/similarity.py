"""ExpertLens similarity between concepts, from their per-unit AP vectors.

Experts of concept c: E_c = {units with AP > tau} (strict). Similarity of two concepts is the
Jaccard index of their expert sets; the threshold-free variant is the cosine between the AP
vectors. Both are computed for all concept pairs at once with matrix products, blocked over
units so a [n_concepts, millions of units] matrix is never copied whole.
"""

import numpy as np
import pandas as pd

# Units per block in the Gram products: 1000 concepts x 16384 units x 8 bytes = 128 MB per
# block. float32 sums of 0/1 are exact up to 2**24 > block size, so the intersection counts
# are exact (blocks are then added in float64).
DEFAULT_CHUNK = 16384


def _as_float(ap):
    """A float array as it is (float32 stays float32: at paper scale the AP matrix is GBs, and a
    float64 copy doubles it); any other dtype as float64."""
    ap = np.asarray(ap)
    return ap if np.issubdtype(ap.dtype, np.floating) else ap.astype(np.float64)


def _threshold(tau, dtype):
    """The largest `dtype` value <= tau: for x of that dtype, x > it exactly when float64(x) > tau
    (float32(0.1) is just above 0.1, so comparing against it would drop x == float32(0.1))."""
    t = np.asarray(tau, dtype=dtype)[()]
    return np.nextafter(t, dtype.type(-np.inf)) if float(t) > tau else t


def expert_sets(ap_by_concept, tau, names=None):
    """Boolean expert masks, one row per concept.

    ap_by_concept: [n_concepts, n_units] AP matrix, ndarray or DataFrame (index = concept names);
      float32 is kept (no copy), the comparison being the exact float64 one.
    tau: threshold; a unit is an expert when AP > tau (strict, as in the paper's E_c).
    names: concept names for an ndarray input (default: the DataFrame index, else 0..n-1).
    Returns (masks [n_concepts, n_units] bool, names list[str-like]); NaN AP is never an expert.
    """
    if isinstance(ap_by_concept, pd.DataFrame):
        names = list(ap_by_concept.index) if names is None else list(names)
        ap = _as_float(ap_by_concept.to_numpy())
    else:
        ap = _as_float(ap_by_concept)
        names = list(range(ap.shape[0])) if names is None else list(names)
    if ap.ndim != 2 or len(names) != ap.shape[0]:
        raise ValueError(f"need [n_concepts, n_units] AP and one name per row, got {ap.shape}")
    return ap > _threshold(tau, ap.dtype), names  # [n_concepts, n_units] bool (NaN > t is False)


def _gram(x, chunk_size, dtype, no_nan=False):
    """x @ x.T accumulated over unit blocks in float64. x: [c, n_units]; returns [c, c].

    Only one [c, chunk_size] block is ever converted to `dtype`; no_nan: raise on a NaN in x."""
    c = x.shape[0]
    g = np.zeros((c, c), dtype=np.float64)  # [c, c]
    for lo in range(0, x.shape[1], chunk_size):
        b = x[:, lo : lo + chunk_size].astype(dtype)  # [c, chunk]
        if no_nan and np.isnan(b).any():
            raise ValueError("AP matrix contains NaN")
        g += b @ b.T
    return g


def jaccard_matrix(masks, chunk_size=DEFAULT_CHUNK):
    """Pairwise Jaccard of expert sets.

    masks: [n_concepts, n_units] bool.
    Returns (jaccard [c, c] float64, both_empty [c, c] bool). Pairs where both sets are empty
    get Jaccard 0 (the union is empty, so the ratio is undefined); `both_empty` marks them so
    they can be counted and reported (or excluded) separately. The diagonal is 1 for
    non-empty sets and 0 (both_empty) for empty ones.
    """
    masks = np.asarray(masks, dtype=bool)
    inter = np.rint(_gram(masks, chunk_size, np.float32))  # [c, c] |E_a & E_b|
    size = np.diag(inter).copy()  # [c] |E_a|
    union = size[:, None] + size[None, :] - inter  # [c, c] |E_a | E_b|
    both_empty = union == 0  # [c, c]
    jac = np.divide(inter, union, out=np.zeros_like(inter), where=~both_empty)
    return jac, both_empty


def cosine_matrix(ap, chunk_size=DEFAULT_CHUNK):
    """Pairwise cosine between AP vectors (threshold-free ExpertLens similarity).

    ap: [n_concepts, n_units] float (NaN not allowed); float32 is read block by block, each block
    converted to float64, so the result equals that of a float64 copy without making one.
    Returns [c, c] float64; rows with zero norm (all AP = 0, e.g. a concept without positives)
    get NaN in their row and column.
    """
    g = _gram(_as_float(ap), chunk_size, np.float64, no_nan=True)  # [c, c]
    norm = np.sqrt(np.diag(g))  # [c]
    with np.errstate(invalid="ignore"):
        cos = g / np.outer(norm, norm)  # [c, c]; a zero row gives 0/0 = NaN, as documented
    return np.clip(cos, -1.0, 1.0)  # clip rounding just above 1 on the diagonal


def pair_values(matrix, names, pairs):
    """Look up matrix values for word pairs whose both words are concepts.

    matrix: [c, c] similarity matrix; names: the c concept names in row order.
    pairs: a sequence of (word_a, word_b) tuples, or a DataFrame with columns word_a, word_b
      (other columns, e.g. the human rating, are kept).
    Returns a DataFrame of the covered pairs only, in input order, with a `value` column.
    Matching is exact (case-sensitive); normalise words before calling.
    """
    matrix = np.asarray(matrix)
    pos = {w: i for i, w in enumerate(names)}
    if len(pos) != len(names):
        raise ValueError("concept names are not unique")
    if isinstance(pairs, pd.DataFrame):
        df = pairs.reset_index(drop=True)
    else:
        df = pd.DataFrame(list(pairs), columns=["word_a", "word_b"])
    ia = df["word_a"].map(pos)  # NaN where the word is not a concept
    ib = df["word_b"].map(pos)
    covered = ia.notna() & ib.notna()
    out = df[covered].copy()
    out["value"] = matrix[ia[covered].astype(int).to_numpy(), ib[covered].astype(int).to_numpy()]
    return out.reset_index(drop=True)
