"""Feature overlap between the dictionaries of AE_n and AE_2n (LFP §3.4, Fig. 3).

A feature found by two SAEs of different width is more likely a real feature of the input
(Sharkey et al.). We compare decoder atoms (one row per feature, [n_features, d_in]) by
cosine similarity, match features one-to-one with the Hungarian algorithm on (1 - cos),
and report the mean matched cosine similarity (MMCS). The features whose match is closest
are the "high overlap" ones handed to automated interpretation.

Pairs keep both indices in named columns, so small- and big-dictionary indices never mix
(one of the original code's defects).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment


def _atoms(dictionary) -> np.ndarray:
    """Rows = features. Accepts an array/tensor [n_features, d_in] or anything with .dictionary()."""
    if hasattr(dictionary, "dictionary"):  # a lensflow SparseAutoencoder
        dictionary = dictionary.dictionary()
    if hasattr(dictionary, "detach"):  # torch tensor -> numpy without importing torch here
        dictionary = dictionary.detach().cpu().double().numpy()
    arr = np.asarray(dictionary, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a dictionary [n_features, d_in], got shape {arr.shape}")
    return arr


def unit_rows(atoms: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (cosine 0 with everything)."""
    norms = np.linalg.norm(atoms, axis=1, keepdims=True)  # [n_features, 1]
    return np.divide(atoms, norms, out=np.zeros_like(atoms), where=norms > 0)


def cosine_similarity_matrix(small, big) -> np.ndarray:
    """Cosines between every small atom and every big atom: [n_small, n_big]."""
    a, b = _atoms(small), _atoms(big)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"atom widths differ: {a.shape[1]} vs {b.shape[1]}")
    return unit_rows(a) @ unit_rows(b).T


def match_features(small, big) -> pd.DataFrame:
    """One-to-one matching maximising total cosine (Hungarian on 1 - cos).

    Every feature of the smaller dictionary gets a distinct partner in the larger one.
    Returns columns small_feature, big_feature, cosine, sorted by cosine descending
    (ties by small_feature).
    """
    cos = cosine_similarity_matrix(small, big)  # [n_small, n_big]
    rows, cols = linear_sum_assignment(1.0 - cos)
    pairs = pd.DataFrame({"small_feature": rows, "big_feature": cols, "cosine": cos[rows, cols]})
    return pairs.sort_values(["cosine", "small_feature"], ascending=[False, True], ignore_index=True)


def mean_matched_cosine(pairs: pd.DataFrame) -> float:
    """MMCS: mean cosine over the matched pairs."""
    return float(pairs["cosine"].mean())


def feature_overlap(small, big) -> tuple[pd.DataFrame, float]:
    """Matched pairs and their MMCS in one call."""
    pairs = match_features(small, big)
    return pairs, mean_matched_cosine(pairs)


def high_overlap_features(pairs: pd.DataFrame, k: int | None = None, threshold: float | None = None) -> pd.DataFrame:
    """The best-matched pairs: the top `k` by cosine, or all with cosine >= `threshold`."""
    if (k is None) == (threshold is None):
        raise ValueError("give exactly one of k or threshold")
    ranked = pairs.sort_values(["cosine", "small_feature"], ascending=[False, True], ignore_index=True)
    if k is not None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        return ranked.head(k)
    return ranked[ranked["cosine"] >= threshold].reset_index(drop=True)


def explained_features(pairs: pd.DataFrame, alive, k: int) -> pd.DataFrame:
    """The k best-matched AE_n features that fire at least once (`alive`: feature ids with a
    record). A dead feature has nothing to explain, however well its direction matches."""
    live = pairs[pairs["small_feature"].isin(set(alive))]
    return high_overlap_features(live, k=k)
