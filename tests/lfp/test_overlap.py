"""Feature overlap between small and big dictionaries, on constructed answers."""

import numpy as np
import pytest
import torch

from lensflow.lfp.sae.model import SparseAutoencoder
from lensflow.lfp.sae.overlap import (
    cosine_similarity_matrix,
    feature_overlap,
    high_overlap_features,
    match_features,
    mean_matched_cosine,
)


def test_permuted_copy_is_recovered():
    rng = np.random.default_rng(0)
    n, d = 12, 32
    small = rng.normal(size=(n, d))  # [n, d]
    perm = rng.permutation(2 * n)[:n]  # where each small atom lands in the big dictionary
    big = rng.normal(size=(2 * n, d)) * 0.1  # noise atoms
    # Copies rescaled by positive factors: cosine ignores norm, keeps sign.
    big[perm] = small * rng.uniform(0.5, 3.0, size=(n, 1))
    pairs, mmcs = feature_overlap(small, big)
    assert mmcs == pytest.approx(1.0)
    assert len(pairs) == n
    recovered = dict(zip(pairs["small_feature"], pairs["big_feature"]))
    assert recovered == {i: int(perm[i]) for i in range(n)}
    assert list(pairs.columns) == ["small_feature", "big_feature", "cosine"]


def test_sign_flipped_copy_is_not_a_match():
    e = np.eye(3)
    # Big holds -e0 and +e0: the assignment must pick +e0 for small atom 0.
    big = np.stack([-e[0], e[0], e[1], e[2]])
    pairs = match_features(e, big)
    assert dict(zip(pairs["small_feature"], pairs["big_feature"])) == {0: 1, 1: 2, 2: 3}
    assert cosine_similarity_matrix(e, big)[0, 0] == pytest.approx(-1.0)


def test_orthogonal_case_known_value():
    # Small = e0, e1. Big = e2, e3 (orthogonal) and (e0 + e1)/sqrt2 with cosine 1/sqrt2 to both.
    # Only one small atom can take the diagonal atom: MMCS = (1/sqrt2 + 0) / 2.
    e = np.eye(4)
    small = e[:2]
    big = np.stack([e[2], (e[0] + e[1]), e[3]])
    pairs, mmcs = feature_overlap(small, big)
    assert mmcs == pytest.approx((2**-0.5) / 2)
    assert pairs["cosine"].tolist() == pytest.approx([2**-0.5, 0.0])
    assert pairs["big_feature"].iloc[0] == 1
    # Completely orthogonal dictionaries: MMCS exactly 0.
    _, zero = feature_overlap(e[:2], e[2:])
    assert zero == 0.0


def test_assignment_is_optimal_not_greedy():
    b0 = np.array([1.0, 0.0, 0.0])
    b1 = np.array([0.0, 1.0, 0.0])
    s0 = np.array([0.6, 0.55, np.sqrt(1 - 0.6**2 - 0.55**2)])  # cos 0.60 to b0, 0.55 to b1
    s1 = np.array([0.58, 0.0, np.sqrt(1 - 0.58**2)])  # cos 0.58 to b0, 0.00 to b1
    pairs = match_features(np.stack([s0, s1]), np.stack([b0, b1]))
    # Greedy takes s0-b0 (0.60) first, leaving s1-b1 (0.00): total 0.60.
    # The optimal one-to-one matching is s0-b1 + s1-b0: total 1.13.
    assert dict(zip(pairs["small_feature"], pairs["big_feature"])) == {0: 1, 1: 0}
    assert mean_matched_cosine(pairs) == pytest.approx((0.55 + 0.58) / 2)


def test_accepts_saes_and_tensors():
    small, big = SparseAutoencoder(8, 8, seed=0), SparseAutoencoder(8, 16, seed=1)
    with torch.no_grad():
        big.W_E[3:11] = small.W_E * 2.0  # big atoms 3..10 = small atoms 0..7
    pairs, mmcs = feature_overlap(small, big)
    assert mmcs == pytest.approx(1.0)
    assert sorted(pairs["big_feature"]) == list(range(3, 11))
    pairs_t, mmcs_t = feature_overlap(small.dictionary(), big.dictionary())
    assert mmcs_t == pytest.approx(mmcs)


def test_zero_atom_gives_zero_cosine_not_nan():
    cos = cosine_similarity_matrix(np.zeros((1, 3)), np.eye(3))
    assert np.all(cos == 0.0)


def test_high_overlap_features():
    pairs, _ = feature_overlap(np.eye(3), np.stack([np.eye(3)[0], [0.6, 0.8, 0], [0, 0.6, 0.8]]))
    # Cosines: s0-b0 1.0; the rest depend on assignment but are sorted descending.
    top = high_overlap_features(pairs, k=1)
    assert top["small_feature"].tolist() == [0] and top["cosine"].iloc[0] == pytest.approx(1.0)
    assert (high_overlap_features(pairs, threshold=0.7)["cosine"] >= 0.7).all()
    assert len(high_overlap_features(pairs, threshold=1.01)) == 0
    with pytest.raises(ValueError):
        high_overlap_features(pairs)
    with pytest.raises(ValueError):
        high_overlap_features(pairs, k=1, threshold=0.5)
    assert pairs["cosine"].is_monotonic_decreasing
