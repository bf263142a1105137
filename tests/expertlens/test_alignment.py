"""lensflow.expertlens.alignment: human alignment, stability, domains, the paired difference, and
the scaling / dynamics views, checked against direct scipy / sklearn computation on small tables.

The bootstrap intervals are reproduced exactly by a plain loop over scipy.stats.spearmanr with the
seed scheme documented in lensflow.core.stats (one default_rng(seed), all indices drawn at once).
"""

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import adjusted_rand_score

from lensflow.expertlens.alignment import (
    alignment_rows,
    category_agreement,
    domain_agreement,
    dynamics_table,
    permutation_ari,
    scaling_table,
    spearman_diff_bootstrap,
    square,
    stability_rows,
)

CONCEPTS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "owl", "yak"]
N_BOOT = 300


def long_table(values: dict, measure: str, both_empty: dict | None = None) -> pd.DataFrame:
    """The long similarity format from {(a, b): value} (a < b), rows in sorted pair order."""
    pairs = sorted(values)
    return pd.DataFrame({
        "concept_a": [a for a, _ in pairs], "concept_b": [b for _, b in pairs], "measure": measure,
        "value": [values[p] for p in pairs],
        "both_empty": [bool((both_empty or {}).get(p, False)) for p in pairs],
    })


def random_values(seed: int, names=CONCEPTS) -> dict:
    rng = np.random.default_rng(seed)
    return {p: float(v) for p, v in zip(itertools.combinations(sorted(names), 2), rng.random(45))}


def loop_bootstrap(x, y, n_boot, seed, ci=0.95):
    """Percentile CI of Spearman rho by a plain loop over scipy (the documented seed scheme)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhos = np.array([stats.spearmanr(x[row], y[row])[0] for row in idx])
    return np.percentile(rhos[np.isfinite(rhos)], [50 * (1 - ci), 50 * (1 + ci)])


def human_table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["word_a", "word_b", "score"])


# A human set exercising the pairing rules: reversed word order, upper case, a word that is not a
# concept, a self-pair, and one pair listed twice (in both orders) whose scores must be averaged.
HUMAN = human_table([
    ("cat", "dog", 8.0), ("Dog", "ANT", 3.0), ("eel", "bee", 5.5), ("fox", "gnu", 7.0),
    ("hen", "owl", 6.0), ("yak", "cat", 2.0), ("ant", "bee", 9.0), ("owl", "ant", 1.0),
    ("gnu", "yak", 4.0), ("zebra", "cat", 9.9), ("cat", "cat", 10.0), ("bee", "fox", 5.5),
    ("dog", "hen", 2.5), ("fox", "dog", 6.5), ("dog", "fox", 3.5),
])
# the covered pairs by hand: (a, b) with a < b -> score (dog/fox: mean of 6.5 and 3.5)
EXPECTED_HUMAN = {
    ("cat", "dog"): 8.0, ("ant", "dog"): 3.0, ("bee", "eel"): 5.5, ("fox", "gnu"): 7.0, ("hen", "owl"): 6.0,
    ("cat", "yak"): 2.0, ("ant", "bee"): 9.0, ("ant", "owl"): 1.0, ("gnu", "yak"): 4.0, ("bee", "fox"): 5.5,
    ("dog", "hen"): 2.5, ("dog", "fox"): 5.0,
}


def direct_xy(values: dict, human: dict):
    """The (similarity, human) vectors in the similarity table's row order (sorted pairs)."""
    keys = [p for p in sorted(values) if p in human]
    return np.array([values[k] for k in keys]), np.array([human[k] for k in keys])


# ---------------------------------------------------------------------------------------------
# alignment_rows


def test_alignment_rho_p_and_ci_equal_direct_scipy():
    values = random_values(0)
    sim = long_table(values, "jaccard@0.5")
    row = alignment_rows(sim, {"toy": HUMAN}, n_boot=N_BOOT, seed=3).iloc[0]
    x, y = direct_xy(values, EXPECTED_HUMAN)
    rho, p = stats.spearmanr(x, y)
    assert row["n"] == len(EXPECTED_HUMAN) == 12
    assert row["rho"] == pytest.approx(rho, abs=1e-12)
    assert row["p"] == pytest.approx(p, rel=1e-9)
    lo, hi = loop_bootstrap(x, y, N_BOOT, seed=3)
    assert row["ci_low"] == pytest.approx(lo, abs=1e-9)
    assert row["ci_high"] == pytest.approx(hi, abs=1e-9)
    assert row["ci_low"] <= row["rho"] <= row["ci_high"]
    assert (row["measure"], row["pairs"], row["n_boot"], row["seed"]) == ("jaccard@0.5", "toy", N_BOOT, 3)
    assert row["n_pairs_total"] == len(HUMAN)  # every listed pair, covered or not


def test_alignment_on_correlated_data_ci_contains_rho_and_excludes_zero():
    rng = np.random.default_rng(1)
    names = [f"w{i:02d}" for i in range(20)]
    pairs = list(itertools.combinations(names, 2))  # 190 pairs
    human = rng.random(len(pairs)) * 10
    values = {p: float(h + rng.normal(0, 3)) for p, h in zip(pairs, human)}
    reversed_pairs = human_table([(b, a, s) for (a, b), s in zip(pairs, human)])
    rows = alignment_rows(long_table(values, "cosine_ap"), {"h": reversed_pairs}, n_boot=N_BOOT, seed=0)
    r = rows.iloc[0]
    x, y = direct_xy(values, dict(zip(pairs, human)))
    assert r["n"] == 190
    assert r["rho"] == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert 0 < r["ci_low"] < r["rho"] < r["ci_high"] < 1


def test_alignment_word_order_and_case_do_not_matter():
    sim = long_table(random_values(2), "jaccard@0.5")
    base = alignment_rows(sim, {"h": HUMAN}, n_boot=N_BOOT, seed=0)
    swapped = HUMAN.rename(columns={"word_a": "word_b", "word_b": "word_a"})[["word_a", "word_b", "score"]]
    upper = HUMAN.assign(word_a=HUMAN["word_a"].str.upper(), word_b=HUMAN["word_b"].str.upper())
    for human in (swapped, upper):
        pd.testing.assert_frame_equal(alignment_rows(sim, {"h": human}, n_boot=N_BOOT, seed=0), base)


def test_alignment_each_measure_and_human_set_scored_separately():
    v1, v2 = random_values(4), random_values(5)
    sim = pd.concat([long_table(v1, "jaccard@0.5"), long_table(v2, "cosine_ap")], ignore_index=True)
    other = human_table([(a, b, float(i)) for i, (a, b) in enumerate(itertools.combinations(CONCEPTS[:6], 2))])
    rows = alignment_rows(sim, {"toy": HUMAN, "other": other}, n_boot=50, seed=0)
    assert list(zip(rows["measure"], rows["pairs"])) == [
        ("jaccard@0.5", "toy"), ("jaccard@0.5", "other"), ("cosine_ap", "toy"), ("cosine_ap", "other")]
    other_h = {(a, b): s for a, b, s in other.itertuples(index=False)}
    for r in rows.itertuples():
        values = v1 if r.measure == "jaccard@0.5" else v2
        x, y = direct_xy(values, EXPECTED_HUMAN if r.pairs == "toy" else other_h)
        assert r.n == len(x)
        assert r.rho == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_alignment_counts_both_empty_only_among_covered_pairs():
    values = random_values(6)
    empty = {("cat", "dog"): True, ("ant", "dog"): True, ("eel", "fox"): True}  # eel-fox is not a human pair
    rows = alignment_rows(long_table(values, "jaccard@0.9", both_empty=empty), {"toy": HUMAN}, n_boot=20, seed=0)
    assert rows.loc[0, "n_both_empty"] == 2
    no_flag = long_table(values, "glove").drop(columns="both_empty")  # a table without the column
    assert alignment_rows(no_flag, {"toy": HUMAN}, n_boot=20, seed=0).loc[0, "n_both_empty"] == 0


def test_alignment_too_few_covered_pairs_is_nan_not_an_error():
    sim = long_table(random_values(7), "jaccard@0.5")
    few = human_table([("cat", "dog", 1.0), ("dog", "ant", 2.0), ("zebra", "lion", 3.0), ("cat", "cat", 4.0)])
    none = human_table([("zebra", "lion", 3.0)])
    rows = alignment_rows(sim, {"few": few, "none": none}, n_boot=20, seed=0)
    assert rows["n"].tolist() == [2, 0]
    assert rows["n_pairs_total"].tolist() == [4, 1]
    assert rows[["rho", "p", "ci_low", "ci_high"]].isna().all().all()


# ---------------------------------------------------------------------------------------------
# stability_rows


def test_stability_compares_every_two_sources_on_shared_pairs():
    full = {m: random_values(10 + i) for i, m in enumerate(["m1", "m2", "m3"])}
    # m3 lacks two pairs (a concept a source could not represent); m2 has a second measure
    drop = {("ant", "bee"), ("cat", "yak")}
    sims = {
        "m1": pd.concat([long_table(full["m1"], "jaccard@0.5"), long_table(random_values(20), "cosine_ap")]),
        "m2": pd.concat([long_table(full["m2"], "jaccard@0.5"), long_table(random_values(21), "cosine_ap")]),
        "m3": long_table({k: v for k, v in full["m3"].items() if k not in drop}, "jaccard@0.5"),
    }
    rows = stability_rows(sims, "across_models", "ds", n_boot=N_BOOT, seed=1)
    got = {(r.a, r.b, r.measure) for r in rows.itertuples()}
    assert got == {("m1", "m2", "jaccard@0.5"), ("m1", "m2", "cosine_ap"),
                   ("m1", "m3", "jaccard@0.5"), ("m2", "m3", "jaccard@0.5")}
    assert set(rows["kind"]) == {"across_models"} and set(rows["fixed"]) == {"ds"}
    for r in rows[rows["measure"] == "jaccard@0.5"].itertuples():
        keys = sorted(set(full[r.a]) - (drop if "m3" in (r.a, r.b) else set()))
        x = [full[r.a][k] for k in keys]
        y = [full[r.b][k] for k in keys]
        assert r.n == len(keys)
        assert r.rho == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
        lo, hi = loop_bootstrap(x, y, N_BOOT, seed=1)
        assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), abs=1e-9)
    cos = rows[rows["measure"] == "cosine_ap"].iloc[0]
    keys = sorted(random_values(20))
    assert cos["rho"] == pytest.approx(
        stats.spearmanr([random_values(20)[k] for k in keys], [random_values(21)[k] for k in keys])[0], abs=1e-12)


def test_stability_identical_sources_rho_one():
    v = random_values(30)
    rows = stability_rows({"d1": long_table(v, "cosine_ap"), "d2": long_table(v, "cosine_ap")}, "across_datasets", "m",
                          n_boot=50, seed=0)
    assert len(rows) == 1
    assert rows.loc[0, "rho"] == pytest.approx(1.0)
    assert rows.loc[0, "ci_low"] == pytest.approx(1.0) and rows.loc[0, "ci_high"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# domains: square matrix, ARI, permutation p


def test_square_is_symmetric_with_unit_diagonal():
    four = ["cat", "dog", "eel", "ant"]
    v = random_values(40, names=four)
    sim = pd.concat([long_table(v, "jaccard@0.5"), long_table(random_values(41, names=four), "cosine_ap")])
    names, m = square(sim, "jaccard@0.5")
    assert names == ["ant", "cat", "dog", "eel"]
    np.testing.assert_array_equal(np.diag(m), 1.0)
    np.testing.assert_array_equal(m, m.T)
    for (a, b), val in v.items():
        assert m[names.index(a), names.index(b)] == val


def test_category_agreement_equals_sklearn_on_labelled_concepts():
    names = ["ant", "bee", "cat", "dog", "oak", "elm", "xyz"]
    clusters = np.array([0, 0, 1, 1, 2, 1, 2])
    cats = {"ant": "insect", "bee": "insect", "cat": "mammal", "dog": "mammal", "oak": "tree", "elm": "tree"}
    got = category_agreement(names, clusters, cats)
    want = adjusted_rand_score([cats[n] for n in names[:6]], clusters[:6])  # "xyz" has no label
    assert got == {"ari": pytest.approx(want), "n_labelled": 6, "note": ""}
    assert 0 < want < 1


def test_category_agreement_without_labels_is_nan_with_a_reason():
    names, clusters = ["ant", "bee", "cat"], np.array([0, 0, 1])
    none = category_agreement(names, clusters, None)
    assert np.isnan(none["ari"]) and none["n_labelled"] == 0 and none["note"]
    two = category_agreement(names, clusters, {"ant": "x", "cat": "y", "zebra": "z"})
    assert np.isnan(two["ari"]) and two["n_labelled"] == 2 and "fewer than 3" in two["note"]
    assert np.isnan(permutation_ari(names, clusters, None))


def test_permutation_ari_matches_a_direct_count():
    names = [f"c{i}" for i in range(12)]
    truth = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    cats = dict(zip(names, truth))
    perfect = np.repeat([0, 1, 2], 4)
    p = permutation_ari(names, perfect, cats, n_perm=200, seed=5)
    # direct: the same shuffles (one rng, permutation per draw) and the (1 + #{null >= observed}) / (n + 1) rule
    rng = np.random.default_rng(5)
    null = np.array([adjusted_rand_score(rng.permutation(np.array(truth)), perfect) for _ in range(200)])
    assert p == pytest.approx((1 + np.sum(null >= 1.0)) / 201)
    assert p < 0.05
    noise = np.random.default_rng(0).integers(0, 3, 12)
    assert permutation_ari(names, noise, cats, n_perm=200, seed=5) > 0.05


def ari_by_hand(truth, clusters) -> float:
    """Hubert & Arabie's adjusted Rand index from the contingency table, written out."""
    def pairs(x):
        return x * (x - 1) / 2
    t_codes, c_codes = np.unique(truth, return_inverse=True)[1], np.unique(clusters, return_inverse=True)[1]
    table = np.zeros((t_codes.max() + 1, c_codes.max() + 1))
    np.add.at(table, (t_codes, c_codes), 1)
    index, rows, cols = pairs(table).sum(), pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum()
    expected = rows * cols / pairs(len(truth))
    return (index - expected) / ((rows + cols) / 2 - expected)


def test_category_agreement_is_the_adjusted_rand_index_by_hand_and_by_sklearn():
    rng = np.random.default_rng(3)
    names = [f"w{i:02d}" for i in range(30)]
    truth = rng.choice(["animal", "artifact", "person", "food"], size=30)
    clusters = np.where(rng.random(30) < 0.6, np.unique(truth, return_inverse=True)[1], rng.integers(0, 5, 30)) + 1
    cats = {n: t for n, t in zip(names, truth) if n not in ("w03", "w17")}  # two concepts unlabelled
    keep = [i for i, n in enumerate(names) if n in cats]
    got = category_agreement(names, clusters, cats)
    assert got["n_labelled"] == 28
    assert got["ari"] == pytest.approx(ari_by_hand(truth[keep], clusters[keep]), abs=1e-12)
    assert got["ari"] == pytest.approx(adjusted_rand_score(truth[keep], clusters[keep]), abs=1e-12)
    assert 0.1 < got["ari"] < 0.9


def test_permutation_p_equals_the_exact_p_over_all_relabellings():
    """The Monte Carlo p converges to the exact p: the share of all distinct relabellings of the
    concepts (multiset permutations of the labels) whose ARI is at least the observed one."""
    names = [f"c{i}" for i in range(8)]
    truth = ["a", "a", "a", "b", "b", "b", "c", "c"]
    clusters = np.array([1, 1, 2, 2, 2, 3, 3, 3])
    cats = dict(zip(names, truth))
    observed = adjusted_rand_score(truth, clusters)
    relabellings = set(itertools.permutations(truth))  # 8! / (3! 3! 2!) = 560, equally likely
    exact = np.mean([adjusted_rand_score(list(t), clusters) >= observed - 1e-12 for t in relabellings])
    assert len(relabellings) == 560 and 0.05 < exact < 0.5
    p = permutation_ari(names, clusters, cats, n_perm=4000, seed=1)
    assert p == pytest.approx(exact, abs=3 * np.sqrt(exact * (1 - exact) / 4000))


def test_permutation_p_of_a_perfect_clustering_counts_the_shuffles_that_tie_it():
    """Shuffles that keep the partition (only the names of the categories change) reach the observed
    ARI of 1 and count as "at least as large": 3! of the 90 distinct relabellings, p = 6/90."""
    names = [f"c{i}" for i in range(6)]
    truth = ["a", "a", "b", "b", "c", "c"]
    clusters = np.array([1, 1, 2, 2, 3, 3])
    cats = dict(zip(names, truth))
    p = permutation_ari(names, clusters, cats, n_perm=3000, seed=0)
    assert p == pytest.approx(6 / 90, abs=3 * np.sqrt((6 / 90) * (84 / 90) / 3000))


def test_domain_agreement_reports_coverage_and_leaves_unlabelled_concepts_out():
    names = ["ant", "bee", "cat", "dog", "oak", "elm", "xyz", "qqq"]
    clusters = np.array([1, 1, 2, 2, 3, 3, 1, 2])
    labels = pd.DataFrame({"concept": names,
                           "category": ["insect", "insect", "mammal", "mammal", "tree", "tree", None, None]})
    got = domain_agreement(names, clusters, labels, n_perm=199, seed=0)
    assert got["n_labelled"] == 6 and got["coverage"] == pytest.approx(0.75) and got["n_categories"] == 3
    assert got["unlabelled"] == "xyz, qqq"
    assert got["ari"] == pytest.approx(1.0)
    assert got["p_permutation"] == pytest.approx(6 / 90, abs=0.06)  # 6 of 90 relabellings keep the partition
    none = domain_agreement(names, clusters, labels.assign(category=None), n_perm=199, seed=0)
    assert np.isnan(none["ari"]) and np.isnan(none["p_permutation"]) and none["coverage"] == 0
    one = domain_agreement(names, clusters, labels.assign(category="thing"), n_perm=199, seed=0)
    assert np.isnan(one["ari"]) and "one category" in one["note"]


# ---------------------------------------------------------------------------------------------
# spearman_diff_bootstrap (neurons vs a baseline on the same pairs)


def test_spearman_diff_equals_direct_paired_loop():
    rng = np.random.default_rng(7)
    y = np.round(rng.random(40) * 10, 1)
    x1 = y + rng.normal(0, 1, 40)  # aligns well
    x2 = y + rng.normal(0, 8, 40)  # aligns poorly
    d = spearman_diff_bootstrap(x1, x2, y, n_boot=N_BOOT, seed=2)
    assert d["n"] == 40
    assert d["diff"] == pytest.approx(stats.spearmanr(x1, y)[0] - stats.spearmanr(x2, y)[0], abs=1e-12)
    idx = np.random.default_rng(2).integers(0, 40, size=(N_BOOT, 40))
    boot = np.array([stats.spearmanr(x1[i], y[i])[0] - stats.spearmanr(x2[i], y[i])[0] for i in idx])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((lo, hi), abs=1e-9)
    assert d["p"] == pytest.approx(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    assert 0 < d["ci_low"] < d["diff"] < d["ci_high"] and d["p"] < 0.05
    rev = spearman_diff_bootstrap(x2, x1, y, n_boot=N_BOOT, seed=2)  # the other way round: mirrored
    assert rev["diff"] == pytest.approx(-d["diff"])
    assert (rev["ci_low"], rev["ci_high"]) == pytest.approx((-d["ci_high"], -d["ci_low"]), abs=1e-9)


def test_spearman_diff_same_measure_is_zero_and_too_few_pairs_nan():
    y = np.arange(10.0)
    x = np.array([3, 1, 2, 5, 4, 7, 6, 9, 8, 10.0])
    d = spearman_diff_bootstrap(x, x, y, n_boot=50, seed=0)
    assert d["diff"] == 0 and d["ci_low"] == 0 and d["ci_high"] == 0 and d["p"] == 1.0
    few = spearman_diff_bootstrap([1, 2], [2, 1], [1, 2], n_boot=50)
    assert few["n"] == 2 and all(np.isnan(few[k]) for k in ("diff", "ci_low", "ci_high", "p"))


# ---------------------------------------------------------------------------------------------
# scaling and dynamics views of the alignment table


def alignment_table() -> pd.DataFrame:
    rows = []
    for source, model, n_params, rho in [
        ("neurons", "p70m", 7e7, 0.3), ("neurons", "p1b", 1e9, 0.5), ("baseline", "p1b", 1e9, 0.9),
        ("neurons", "p70m@step512", 7e7, 0.2), ("neurons", "p70m@step1", 7e7, 0.1),
        ("neurons", "p70m@step143000", 7e7, 0.35), ("neurons", "p70m@main", 7e7, 0.4),
        ("neurons", "other", 5e8, 0.6),
    ]:
        rows.append({"source_type": source, "model": model, "n_params": n_params, "dataset": "ds",
                     "measure": "jaccard@0.5", "pairs": "men", "rho": rho, "ci_low": rho - 0.1,
                     "ci_high": rho + 0.1, "p": 0.01, "n": 30})
    return pd.DataFrame(rows)


def test_scaling_table_keeps_final_neuron_models_of_the_list():
    s = scaling_table(alignment_table(), ["p70m", "p1b"])
    assert s["model"].tolist() == ["p70m", "p1b"]
    assert s["rho"].tolist() == [0.3, 0.5]  # the p1b baseline row is not a neuron row
    assert s["n_params"].tolist() == [7e7, 1e9]


def test_dynamics_table_parses_steps_in_order():
    d = dynamics_table(alignment_table())
    assert d["model"].tolist() == ["p70m"] * 3
    assert d["step"].tolist() == [1, 512, 143000]  # sorted numerically; "@main" has no step
    assert d["revision"].tolist() == ["step1", "step512", "step143000"]
    assert d["rho"].tolist() == [0.1, 0.2, 0.35]
    finals = alignment_table()
    empty = dynamics_table(finals[~finals["model"].str.contains("@")])
    assert empty.empty and "step" in empty.columns
