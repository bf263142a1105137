"""lensflow.expertlens.claims (and the shared row / verdict rule of lensflow.core.claims): each claim's
statistic against direct scipy computation on small tables, the verdict at and around its threshold,
and the untestable cases (NaN statistic, missing data).

Two bugs these tests found are fixed: a NaN trend Spearman was "not supported" (now untestable),
and untestable rows had no reason in `note`.
"""

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lensflow.core.claims import claim_row
from lensflow.expertlens import claims

COLUMNS = ["claim", "statistic", "value", "ci_low", "ci_high", "p", "n", "verdict", "note"]


# ---------------------------------------------------------------------------------------------
# the shared rule: supported iff the CI's lower end is above zero


@pytest.mark.parametrize("ci_low, verdict", [
    (0.2, "supported"), (1e-12, "supported"), (0.0, "not supported"), (-1e-12, "not supported"),
    (-0.5, "not supported"), (np.nan, "untestable"),
])
def test_claim_row_default_verdict_at_and_around_zero(ci_low, verdict):
    row = claim_row("c", "s", 0.3, ci_low, 0.6, 0.01, 12, note="x")
    assert list(row) == COLUMNS
    assert row["verdict"] == verdict
    assert (row["value"], row["ci_high"], row["p"], row["n"], row["note"]) == (0.3, 0.6, 0.01, 12, "x")


def test_claim_row_explicit_verdict_wins_and_defaults_are_nan():
    row = claim_row("c", "s", verdict="untestable")
    assert row["verdict"] == "untestable" and row["n"] == 0 and "undefined" in row["note"]  # says why
    assert claim_row("c", "s", verdict="untestable", note="no labels")["note"] == "no labels"
    assert all(np.isnan(row[k]) for k in ("value", "ci_low", "ci_high", "p"))
    assert claim_row("c", "s", 1.0, -1.0, 2.0, verdict="supported")["verdict"] == "supported"


# ---------------------------------------------------------------------------------------------
# alignment claims and "tau = 0.5 aligns best"


def align_row(model="m1", dataset="ds", pairs="men", measure="jaccard@0.5", rho=0.5, lo=0.2, hi=0.7,
              source="neurons", n=30, both_empty=0):
    return {"source_type": source, "model": model, "dataset": dataset, "measure": measure, "pairs": pairs,
            "rho": rho, "ci_low": lo, "ci_high": hi, "p": 0.01, "n": n, "n_both_empty": both_empty}


def test_alignment_claims_one_row_per_final_neuron_cell_with_ci_verdict():
    table = pd.DataFrame([
        align_row(rho=0.5, lo=0.2, hi=0.7, both_empty=3),
        align_row(model="m2", rho=0.1, lo=0.0, hi=0.3),  # CI touches zero: not supported
        align_row(model="m3", rho=np.nan, lo=np.nan, hi=np.nan, n=2),  # too few pairs: untestable
        align_row(model="m1@step1", rho=0.9, lo=0.8, hi=0.95),  # a checkpoint: not a headline claim
        align_row(source="baseline", model="m1", rho=0.9, lo=0.8, hi=0.95),
        align_row(measure="cosine_ap", rho=0.9, lo=0.8, hi=0.95),  # another measure
    ])
    rows = pd.DataFrame(claims.alignment_claims(table, "jaccard@0.5"))
    assert list(rows.columns) == COLUMNS
    assert rows["verdict"].tolist() == ["supported", "not supported", "untestable"]
    assert rows["value"].iloc[:2].tolist() == [0.5, 0.1] and np.isnan(rows["value"].iloc[2])
    assert rows["n"].tolist() == [30, 30, 2]
    assert "m1 / ds vs men" in rows.loc[0, "statistic"] and "3 covered pairs" in rows.loc[0, "note"]


def tau_cells(best: list[str | None], taus=(0.5, 0.6, 0.7)) -> pd.DataFrame:
    """One (model, data set, human set) cell per entry; the named tau has the top rho (None: all NaN)."""
    rows = []
    for i, top in enumerate(best):
        for tau in taus:
            m = f"jaccard@{tau:g}"
            rho = np.nan if top is None else (0.8 if m == top else 0.3 + tau / 10)
            rows.append(align_row(model=f"m{i}", measure=m, rho=rho))
        rows.append(align_row(model=f"m{i}", measure="cosine_ap", rho=0.99))  # not a tau: ignored
        rows.append(align_row(model=f"m{i}@step1", measure="jaccard@0.6", rho=0.99))  # checkpoint: ignored
    return pd.DataFrame(rows)


@pytest.mark.parametrize("best, share, verdict", [
    (["jaccard@0.5"] * 3, 1.0, "supported"),
    (["jaccard@0.5", "jaccard@0.5", "jaccard@0.7"], 2 / 3, "supported"),
    (["jaccard@0.5", "jaccard@0.6"], 0.5, "not supported"),  # exactly half is not a majority
    (["jaccard@0.5", "jaccard@0.6", None], 0.5, "not supported"),  # all-NaN cell left out of n
    (["jaccard@0.5", "jaccard@0.6", "jaccard@0.7"], 1 / 3, "not supported"),
])
def test_best_tau_share_and_majority_threshold(best, share, verdict):
    row = claims.best_tau_claim(tau_cells(best), [0.5, 0.6, 0.7])
    assert row["value"] == pytest.approx(share)
    assert row["n"] == sum(b is not None for b in best)
    assert row["verdict"] == verdict
    assert row["claim"].startswith("tau = 0.5 aligns best")


def test_best_tau_names_the_lowest_configured_tau():
    row = claims.best_tau_claim(tau_cells(["jaccard@0.6", "jaccard@0.6"], taus=(0.7, 0.6, 0.8)), [0.7, 0.6, 0.8])
    assert row["claim"].startswith("tau = 0.6") and row["value"] == 1.0 and row["verdict"] == "supported"


def test_best_tau_without_neuron_data_is_untestable():
    only_nan = claims.best_tau_claim(tau_cells([None, None]), [0.5, 0.6, 0.7])
    assert only_nan["verdict"] == "untestable" and only_nan["n"] == 0 and np.isnan(only_nan["value"])
    baselines = pd.DataFrame([align_row(source="baseline", measure="glove")])
    none = claims.best_tau_claim(baselines, [0.5, 0.6, 0.7])
    assert none["verdict"] == "untestable" and none["n"] == 0


# ---------------------------------------------------------------------------------------------
# neurons vs baselines


def long_table(values: dict, measure: str) -> pd.DataFrame:
    pairs = sorted(values)
    return pd.DataFrame({"concept_a": [a for a, _ in pairs], "concept_b": [b for _, b in pairs],
                         "measure": measure, "value": [values[p] for p in pairs], "both_empty": False})


def test_baseline_claims_diff_equals_direct_scipy_and_matches_baselines_to_models():
    rng = np.random.default_rng(0)
    names = [f"w{i:02d}" for i in range(12)]
    pairs = list(itertools.combinations(names, 2))  # 66 pairs
    human = {p: float(s) for p, s in zip(pairs, np.round(rng.random(len(pairs)) * 10, 1))}
    neuron = {p: h + rng.normal(0, 1) for p, h in human.items()}  # aligns well
    glove = {p: h + rng.normal(0, 20) for p, h in human.items() if "w00" not in p}  # noisy, lacks w00's pairs
    emb_m1 = {p: -h + rng.normal(0, 1) for p, h in human.items()}  # anti-aligned
    neuron_sims = {("m1", "ds"): pd.concat([long_table(neuron, "jaccard@0.5"), long_table(emb_m1, "cosine_ap")])}
    baseline_sims = {
        ("glove", "", ""): long_table(glove, "glove"),  # independent of model and data set: always compared
        ("input_embedding", "m1", ""): long_table(emb_m1, "input_embedding"),
        ("input_embedding", "m2", ""): long_table(neuron, "input_embedding"),  # another model: skipped
        ("minilm", "", "other_ds"): long_table(neuron, "minilm"),  # another data set: skipped
    }
    # the human set lists its pairs reversed, as covered_pairs allows
    human_df = pd.DataFrame([(b, a, s) for (a, b), s in human.items()], columns=["word_a", "word_b", "score"])
    rows = pd.DataFrame(claims.baseline_claims(neuron_sims, baseline_sims, {"h": human_df}, "jaccard@0.5",
                                               n_boot=200, seed=0))
    assert rows["claim"].tolist() == ["neurons (jaccard@0.5) align better than glove",
                                      "neurons (jaccard@0.5) align better than input_embedding"]
    for r, base in zip(rows.itertuples(), [glove, emb_m1]):
        keys = sorted(base)
        x1, x2, y = ([d[k] for k in keys] for d in (neuron, base, human))
        assert r.n == len(keys)
        assert r.value == pytest.approx(stats.spearmanr(x1, y)[0] - stats.spearmanr(x2, y)[0], abs=1e-12)
        assert r.ci_low <= r.value <= r.ci_high
    assert rows["n"].tolist() == [55, 66]
    assert rows["verdict"].tolist() == ["supported", "supported"]


def test_baseline_claims_worse_neurons_not_supported_and_no_pairs_untestable():
    names = [f"w{i}" for i in range(8)]
    pairs = list(itertools.combinations(names, 2))
    rng = np.random.default_rng(1)
    human = {p: float(i) for i, p in enumerate(pairs)}
    neuron = {p: rng.random() for p in pairs}  # unrelated to the human scores
    base = {p: h for p, h in human.items()}  # perfect
    human_df = pd.DataFrame([(a, b, s) for (a, b), s in human.items()], columns=["word_a", "word_b", "score"])
    other = pd.DataFrame([("zebra", "lion", 1.0)], columns=["word_a", "word_b", "score"])
    rows = claims.baseline_claims({("m", "d"): long_table(neuron, "jaccard@0.5")},
                                  {("glove", "", ""): long_table(base, "glove")},
                                  {"h": human_df, "none": other}, "jaccard@0.5", n_boot=200, seed=0)
    assert [r["verdict"] for r in rows] == ["not supported", "untestable"]
    assert rows[0]["ci_high"] < 0 and rows[1]["n"] == 0


# ---------------------------------------------------------------------------------------------
# expert counts vs tau


def counts_table(med_by_tau: dict) -> pd.DataFrame:
    """Three concepts per tau around the given median count."""
    return pd.DataFrame([{"concept": c, "tau": t, "n_experts": m + d}
                         for t, m in med_by_tau.items() for c, d in zip("abc", (-1, 0, 5))])


def test_count_claim_log_decay_supported_with_direct_r2():
    taus = [0.5, 0.6, 0.7, 0.8, 0.9]
    med = {t: round(2000 * np.exp(-12 * (t - 0.5))) for t in taus}  # 2000 ... 16: log-linear in tau
    row = claims.count_claim(counts_table(med))
    c = np.array([med[t] for t in taus], float)
    assert row["value"] == pytest.approx(stats.linregress(taus, np.log1p(c)).rvalue ** 2)
    assert f"{stats.linregress(taus, c).rvalue ** 2:.3f}" in row["note"]
    assert row["n"] == 5 and row["verdict"] == "supported"


def test_count_claim_linear_or_rising_counts_not_supported():
    taus = [0.5, 0.6, 0.7, 0.8, 0.9]
    linear = claims.count_claim(counts_table({t: 1000 - 1000 * (t - 0.5) for t in taus}))
    assert linear["verdict"] == "not supported"  # the linear fit is the better one
    rising = claims.count_claim(counts_table({t: round(16 * np.exp(12 * (t - 0.5))) for t in taus}))
    assert rising["value"] > 0.9 and rising["verdict"] == "not supported"  # log-shaped but growing


def test_count_claim_too_few_taus_or_flat_counts_untestable():
    assert claims.count_claim(counts_table({0.5: 100, 0.9: 10}))["verdict"] == "untestable"
    flat = claims.count_claim(counts_table({0.5: 7, 0.6: 7, 0.7: 7}))
    assert flat["verdict"] == "untestable" and np.isnan(flat["value"])


# ---------------------------------------------------------------------------------------------
# stability, trends, causal check, domains


def test_stability_claims_filter_measure_and_use_the_ci_rule():
    s = pd.DataFrame([
        {"kind": "across_models", "a": "m1", "b": "m2", "fixed": "ds", "measure": "jaccard@0.5",
         "rho": 0.6, "ci_low": 0.4, "ci_high": 0.7, "p": 1e-4, "n": 40},
        {"kind": "across_datasets", "a": "d1", "b": "d2", "fixed": "m1", "measure": "jaccard@0.5",
         "rho": 0.1, "ci_low": -0.2, "ci_high": 0.3, "p": 0.5, "n": 40},
        {"kind": "across_models", "a": "m1", "b": "m2", "fixed": "ds", "measure": "cosine_ap",
         "rho": 0.9, "ci_low": 0.8, "ci_high": 0.95, "p": 1e-6, "n": 40},
    ])
    rows = claims.stability_claims(s, "jaccard@0.5")
    assert [r["claim"] for r in rows] == ["ExpertLens similarities are stable across models",
                                          "ExpertLens similarities are stable across datasets"]
    assert [r["verdict"] for r in rows] == ["supported", "not supported"]
    assert rows[0]["statistic"] == "Spearman rho, m1 vs m2 (ds)"


# x = 1..8 against two orderings: Spearman p just under and just over 0.05 (both rho > 0)
JUST_UNDER = [1, 0, 2, 4, 6, 5, 7, 3]  # rho 0.714, p 0.0465
JUST_OVER = [2, 0, 1, 7, 3, 4, 5, 6]  # rho 0.690, p 0.0580


@pytest.mark.parametrize("y, sign, verdict", [
    (JUST_UNDER, 1, "supported"), (JUST_OVER, 1, "not supported"), (JUST_UNDER, -1, "not supported"),
])
def test_trend_claim_equals_scipy_and_needs_positive_rho_and_p_below_005(y, sign, verdict):
    x = pd.Series(np.arange(1.0, 9.0))
    rho = pd.Series(sign * np.array(y, float))
    row = claims.trend_claim("grows", x, rho, "step")
    r, p = stats.spearmanr(x, rho)
    assert row["value"] == pytest.approx(r) and row["p"] == pytest.approx(p) and row["n"] == 8
    assert row["verdict"] == verdict
    assert (0.04 < p < 0.05) if y is JUST_UNDER else (0.05 < p < 0.06)


def test_trend_claim_nan_points_dropped_and_fewer_than_three_untestable_with_reason():
    x = pd.Series([1.0, 2.0, 3.0, 4.0])
    row = claims.trend_claim("grows", x, pd.Series([0.1, np.nan, 0.3, 0.5]), "step")
    assert row["n"] == 3 and row["value"] == pytest.approx(1.0)
    few = claims.trend_claim("grows", x, pd.Series([0.1, np.nan, np.nan, 0.5]), "step")
    assert few["verdict"] == "untestable" and few["n"] == 2 and "fewer than 3" in few["note"]
    empty = claims.trend_claim("grows", pd.Series([], dtype=float), pd.Series([], dtype=float), "step")
    assert empty["verdict"] == "untestable" and empty["n"] == 0


def test_trend_claim_undefined_statistic_is_untestable():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same_size = pd.Series([1e9, 1e9, 1e9])
        row = claims.trend_claim("grows with size", same_size, pd.Series([0.2, 0.4, 0.5]), "parameters")
    assert np.isnan(row["value"])
    assert row["verdict"] == "untestable"


def causal_summary() -> pd.DataFrame:
    base = {"measure": "logp", "condition": "experts-random", "k": 10, "n_prompts": 20, "p_value": 0.01}
    return pd.DataFrame([
        {**base, "concept": "cat", "mean": 0.8, "ci_low": 0.3, "ci_high": 1.3},
        {**base, "concept": "dog", "mean": 0.1, "ci_low": -0.2, "ci_high": 0.4, "p_value": 0.4},
        {**base, "concept": "eel", "mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_prompts": 1},
        {**base, "concept": "cat", "condition": "experts-baseline", "mean": 2.0, "ci_low": 1.0, "ci_high": 3.0},
        {**base, "concept": "cat", "measure": "p", "mean": 2.0, "ci_low": 1.0, "ci_high": 3.0},
    ])


def test_causal_claims_experts_minus_random_logp_rows_only():
    rows = claims.causal_claims(causal_summary(), "m1")
    assert [r["verdict"] for r in rows] == ["supported", "not supported", "untestable"]
    assert [r["n"] for r in rows] == [20, 20, 1]
    assert rows[0]["p"] == 0.01 and "m1, 'cat'" in rows[0]["statistic"] and "k=10" in rows[0]["statistic"]


def domains_row(ari, p, note="", n=12):
    return {"model": "m1", "dataset": "ds", "tau": 0.5, "ari": ari, "n_labelled": n, "note": note, "p_permutation": p}


@pytest.mark.parametrize("p, verdict", [(0.01, "supported"), (0.0499, "supported"), (0.05, "not supported"),
                                        (0.3, "not supported")])
def test_domain_claims_permutation_p_threshold(p, verdict):
    rows = claims.domain_claims(pd.DataFrame([domains_row(0.4, p)]))
    assert rows[0]["verdict"] == verdict and rows[0]["value"] == 0.4 and rows[0]["p"] == p and rows[0]["n"] == 12


def test_domain_claims_name_the_labels_and_their_coverage():
    row = {**domains_row(0.2, 0.01), "categories": "wordnet-lexnames", "n_concepts": 14}
    statistic = claims.domain_claims(pd.DataFrame([row]))[0]["statistic"]
    assert "wordnet-lexnames labels" in statistic and "12 of 14 concepts labelled" in statistic


def test_domain_claims_without_labels_untestable_with_the_reason():
    rows = claims.domain_claims(pd.DataFrame([domains_row(np.nan, np.nan, "no category labels configured", 0)]))
    assert rows[0]["verdict"] == "untestable" and rows[0]["note"] == "no category labels configured"


# ---------------------------------------------------------------------------------------------
# untestable rows should say why


def _untestable_rows():
    nan_stab = pd.DataFrame([{"kind": "across_models", "a": "m1", "b": "m2", "fixed": "ds", "measure": "jaccard@0.5",
                              "rho": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "n": 2}])
    few = pd.DataFrame([("a", "b", 1.0)], columns=["word_a", "word_b", "score"])
    sim = long_table({("a", "b"): 0.5, ("a", "c"): 0.1}, "jaccard@0.5")
    return {
        "count_claim (fewer than 3 taus)": claims.count_claim(counts_table({0.5: 100, 0.9: 10})),
        "stability_claims (NaN rho)": claims.stability_claims(nan_stab, "jaccard@0.5")[0],
        "causal_claims (NaN mean)": claims.causal_claims(causal_summary(), "m1")[2],
        "baseline_claims (no common pairs)": claims.baseline_claims(
            {("m", "d"): sim}, {("glove", "", ""): long_table({("a", "b"): 0.2}, "glove")}, {"h": few},
            "jaccard@0.5", n_boot=10, seed=0)[0],
    }


@pytest.mark.parametrize("case", list(_untestable_rows()))
def test_untestable_cases_are_untestable(case):
    assert _untestable_rows()[case]["verdict"] == "untestable"


@pytest.mark.parametrize("case", list(_untestable_rows()))
def test_untestable_rows_give_a_reason(case):
    assert _untestable_rows()[case]["note"].strip()
