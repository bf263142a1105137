"""LFP summary tables, claims and probe evaluation on constructed inputs, each checked against a
direct computation (pandas, scipy.stats, numpy) or the verdict rule its docstring states."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lensflow.lfp.claims import ablation_claims, activity_claims, overlap_claims, probe_claims
from lensflow.lfp.probes.evaluate import MEASURE_COLUMNS, evaluate_logistic, evaluate_regression
from lensflow.lfp.probes.triples import corpus_lexicon
from lensflow.lfp.sae.overlap import explained_features, feature_overlap
from lensflow.core.stats import bootstrap_mean
from lensflow.lfp.sae.tables import MEASURES, overlap_summary, random_mmcs, sae_summary

# --- sae_summary ----------------------------------------------------------------------------------

RNG = np.random.default_rng(0)


def metric_rows(model, task, variant, layers, width=1, tied=True, alpha=1e-3, selection="highest", shift=0.0):
    rows = []
    for layer in layers:
        rows.append(dict(model=model, task=task, variant=variant, layer=layer, width=width, tied=tied, alpha=alpha,
                         selection=selection, heldout_mse=RNG.uniform(0.01, 0.1), heldout_fvu=RNG.uniform(0.1, 0.5) + shift,
                         heldout_fvu_per_dim=RNG.uniform(0.2, 0.6) + shift,
                         heldout_l0=RNG.uniform(2, 20) + 10 * shift, heldout_dead_fraction=RNG.uniform(0, 0.3)))
    return rows


@pytest.fixture(scope="module")
def metrics():
    rows = []
    for model in ("m1", "m2"):
        rows += metric_rows(model, "vader", "n", [7, 3, 5, 9, 1])
        rows += metric_rows(model, "vader", "2n", [5, 1, 9, 3, 7], width=2, shift=-0.1)
        rows += metric_rows(model, "vader", "untied", [9, 7, 5, 3, 1], tied=False, shift=0.05)
        rows += metric_rows(model, "vader", "lowest", [0, 2, 4, 6], selection="lowest", shift=0.2)
    df = pd.DataFrame(rows)
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # no helpful row order


def test_sae_summary_means_are_the_direct_means(metrics):
    out = sae_summary(metrics)
    assert len(out) == 8
    direct = metrics.groupby(["model", "task", "variant"])[MEASURES].mean()
    for r in out.itertuples():
        for m in MEASURES:
            assert getattr(r, m) == pytest.approx(direct.loc[(r.model, r.task, r.variant), m], rel=1e-12)
        g = metrics[(metrics.model == r.model) & (metrics.variant == r.variant)]
        assert r.layers == ",".join(map(str, sorted(g["layer"])))
        assert r.width == g["width"].iloc[0] and r.tied == g["tied"].iloc[0] and r.selection == g["selection"].iloc[0]


@pytest.mark.parametrize("model,variant", list(itertools.product(["m1", "m2"], ["2n", "untied"])))
def test_sae_summary_paired_difference_is_ttest_rel_over_layers(metrics, model, variant):
    row = sae_summary(metrics).set_index(["model", "variant"]).loc[(model, variant)]
    assert row["comparison"] == "paired over layers"
    a = metrics[(metrics.model == model) & (metrics.variant == variant)].set_index("layer").sort_index()
    b = metrics[(metrics.model == model) & (metrics.variant == "n")].set_index("layer").sort_index()
    for m in ("heldout_fvu", "heldout_l0"):
        res = stats.ttest_rel(a[m].to_numpy(), b[m].to_numpy())
        ci = res.confidence_interval(0.95)
        assert row[f"{m}_vs_n"] == pytest.approx((a[m] - b[m]).mean())
        assert row[f"{m}_vs_n_low"] == pytest.approx(ci.low)
        assert row[f"{m}_vs_n_high"] == pytest.approx(ci.high)
        assert row[f"{m}_vs_n_p"] == pytest.approx(res.pvalue)


def test_sae_summary_other_layers_are_compared_unpaired(metrics):
    out = sae_summary(metrics).set_index(["model", "variant"])
    row = out.loc[("m2", "lowest")]
    assert row["comparison"] == "unpaired (other layers)"
    a = metrics[(metrics.model == "m2") & (metrics.variant == "lowest")]
    b = metrics[(metrics.model == "m2") & (metrics.variant == "n")]
    for m in ("heldout_fvu", "heldout_l0"):
        res = stats.ttest_ind(a[m], b[m], equal_var=False)
        ci = res.confidence_interval(0.95)
        assert row[f"{m}_vs_n"] == pytest.approx(a[m].mean() - b[m].mean())
        assert (row[f"{m}_vs_n_low"], row[f"{m}_vs_n_high"]) == pytest.approx((ci.low, ci.high))
        assert row[f"{m}_vs_n_p"] == pytest.approx(res.pvalue)
    assert pd.isna(out.loc[("m1", "n"), "comparison"]) and pd.isna(out.loc[("m1", "n"), "heldout_fvu_vs_n"])


def test_sae_summary_with_a_single_layer_gives_nan_intervals():
    df = pd.DataFrame(metric_rows("m", "t", "n", [4]) + metric_rows("m", "t", "2n", [4], width=2))
    row = sae_summary(df).set_index("variant").loc["2n"]
    assert row["heldout_fvu_vs_n"] == pytest.approx(
        df.loc[df.variant == "2n", "heldout_fvu"].iloc[0] - df.loc[df.variant == "n", "heldout_fvu"].iloc[0])
    assert np.isnan(row["heldout_fvu_vs_n_low"]) and np.isnan(row["heldout_fvu_vs_n_p"])


# --- random_mmcs / overlap_summary ----------------------------------------------------------------

def test_random_mmcs_is_the_chance_level():
    v = random_mmcs(16, 16, 32, seed=0)
    assert 0 < v < 1
    assert v == random_mmcs(16, 16, 32, seed=0)
    assert v != random_mmcs(16, 16, 32, seed=1)
    # recomputed: the same Gaussian draws, matched one-to-one with the Hungarian algorithm
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((16, 16)), rng.standard_normal((32, 16))
    assert v == pytest.approx(feature_overlap(a, b)[1])
    # chance overlap falls as the space grows, and an exhaustive check on a 3x3 case
    assert random_mmcs(128, 16, 32) < random_mmcs(32, 16, 32) < random_mmcs(8, 16, 32)
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    cos = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    best = max(np.mean([cos[i, p[i]] for i in range(3)]) for p in itertools.permutations(range(3)))
    assert random_mmcs(4, 3, 3, seed=5) == pytest.approx(best)


def test_overlap_summary_per_layer():
    rows = []
    for layer, n in [(2, 12), (5, 9)]:
        cos = np.random.default_rng(layer).uniform(-0.1, 1.0, n)
        rows += [dict(layer=layer, small_feature=i, big_feature=i + 1, cosine=c) for i, c in enumerate(cos)]
    overlap = pd.DataFrame(rows).sample(frac=1, random_state=0)
    out = overlap_summary(overlap, n_features=4, d_in=8, n_small=8, n_big=16, seed=3)
    assert out["layer"].tolist() == [2, 5]
    for _, r in out.iterrows():
        cos = np.sort(overlap.loc[overlap.layer == r["layer"], "cosine"].to_numpy())[::-1]
        assert r["mmcs"] == pytest.approx(cos.mean())
        assert r["top_mean_cosine"] == pytest.approx(cos[:4].mean())
        assert r["top_min_cosine"] == pytest.approx(cos[3])
        assert r["n_features"] == len(cos)
        assert r["frac_cos_above_0.7"] == pytest.approx((cos > 0.7).mean())
        assert r["mmcs_random"] == random_mmcs(8, 8, 16, seed=3)
        by_feature = overlap.loc[overlap.layer == r["layer"]].sort_values("small_feature")["cosine"].to_numpy()
        ref = bootstrap_mean(by_feature, seed=3 + int(r["layer"]))
        assert (r["mmcs_ci_low"], r["mmcs_ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high))
        assert r["mmcs_ci_low"] < r["mmcs"] < r["mmcs_ci_high"]


# --- explained_features ---------------------------------------------------------------------------

def test_explained_features_are_the_top_k_live_features():
    rng = np.random.default_rng(2)
    pairs = pd.DataFrame({"small_feature": np.arange(20), "big_feature": rng.permutation(40)[:20],
                          "cosine": rng.uniform(0, 1, 20)})
    alive = [0, 3, 4, 7, 8, 11, 15, 19, 33]  # 33 is not a small feature at all
    out = explained_features(pairs, alive, k=4)
    live = [(c, f) for f, c in zip(pairs.small_feature, pairs.cosine) if f in alive]
    expect = [f for c, f in sorted(live, reverse=True)[:4]]
    assert out["small_feature"].tolist() == expect
    assert out["cosine"].is_monotonic_decreasing
    big = dict(zip(pairs.small_feature, pairs.big_feature))
    assert [big[f] for f in expect] == out["big_feature"].tolist()
    assert len(explained_features(pairs, alive, k=100)) == 8
    assert explained_features(pairs, [], k=3).empty
    # the best-matched feature overall is dead, so it is never explained
    top = int(pairs.loc[pairs.cosine.idxmax(), "small_feature"])
    assert top not in alive and top not in out["small_feature"].tolist()


# --- lfp.claims -----------------------------------------------------------------------------------

def probe_measures(model="m", task="vader", tau=(0.4, 0.01), base=(0.05, 0.6), neg=(0.3, 0.02),
                   sign=((0.8, 0.62, 0.91), (0.7, 0.45, 0.86)), logistic=None):
    rows = [dict(measure="kendall_tau", value=tau[0], p=tau[1], n=40),
            dict(measure="kendall_tau_xavier_baseline", value=base[0], p=base[1], n=40),
            dict(measure="kendall_tau_negative", value=neg[0], p=neg[1], n=20),
            dict(measure="sign_accuracy_positive", value=sign[0][0], ci_low=sign[0][1], ci_high=sign[0][2], n=20),
            dict(measure="sign_accuracy_negative", value=sign[1][0], ci_low=sign[1][1], ci_high=sign[1][2], n=20)]
    if logistic is not None:
        rows = [dict(measure="logistic_accuracy", value=logistic[0], ci_low=logistic[1], ci_high=logistic[2], n=50),
                dict(measure="majority_baseline", value=logistic[3], n=50)]
    df = pd.DataFrame(rows, columns=MEASURE_COLUMNS)
    return df.assign(model=model, task=task)


@pytest.mark.parametrize("tau,p,expect", [(0.4, 0.01, "supported"), (0.4, 0.2, "not supported"),
                                          (-0.4, 0.01, "not supported"), (np.nan, np.nan, "untestable"),
                                          (0.4, np.nan, "untestable"), (0.4, 0.05, "not supported")])
def test_probe_claim_kendall_verdicts(tau, p, expect):
    rows = probe_claims(probe_measures(tau=(tau, p)))
    main = [r for r in rows if r["statistic"].startswith("Kendall tau per word, m")]
    assert len(main) == 1 and main[0]["verdict"] == expect
    assert main[0]["p"] == p or (np.isnan(p) and np.isnan(main[0]["p"]))


@pytest.mark.parametrize("p,expect", [(0.6, "supported"), (0.05, "supported"), (0.001, "not supported"),
                                      (np.nan, "untestable")])
def test_probe_claim_xavier_baseline_verdict(p, expect):
    rows = probe_claims(probe_measures(base=(0.3, p)))
    base = [r for r in rows if "Xavier" in r["statistic"]]
    assert len(base) == 1 and base[0]["verdict"] == expect


def test_probe_claim_negative_words_and_sign_accuracy():
    rows = probe_claims(probe_measures(neg=(0.3, 0.2), sign=((0.8, 0.62, 0.91), (0.6, 0.45, 0.86))))
    by = {r["statistic"]: r["verdict"] for r in rows}
    assert by["Kendall tau, negative words, m / vader"] == "not supported"
    assert by["sign accuracy, positive words, m / vader"] == "supported"  # CI above 0.5
    assert by["sign accuracy, negative words, m / vader"] == "not supported"  # CI includes 0.5
    rows = probe_claims(probe_measures(sign=((np.nan, np.nan, np.nan), (0.9, 0.5, 0.95))))
    by = {r["statistic"]: r["verdict"] for r in rows}
    assert by["sign accuracy, positive words, m / vader"] == "untestable"
    assert by["sign accuracy, negative words, m / vader"] == "not supported"  # low == 0.5 is not above it
    assert len(rows) == 5


@pytest.mark.parametrize("acc,low,high,base,expect", [(0.9, 0.8, 0.96, 0.5, "supported"),
                                                      (0.9, 0.8, 0.96, 0.85, "not supported"),
                                                      (0.7, 0.55, 0.8, 0.52, "supported"),
                                                      (0.6, 0.45, 0.72, 0.3, "not supported"),
                                                      (np.nan, np.nan, np.nan, 0.5, "untestable")])
def test_probe_claim_logistic_beats_majority_and_chance(acc, low, high, base, expect):
    rows = probe_claims(probe_measures(task="hh", logistic=(acc, low, high, base)))
    assert len(rows) == 1 and rows[0]["verdict"] == expect
    assert rows[0]["value"] == acc or np.isnan(acc)
    assert f"{base:.3f}" in rows[0]["note"]


def test_probe_claims_per_model_and_task():
    df = pd.concat([probe_measures("a", "vader"), probe_measures("b", "vader", tau=(0.1, 0.3)),
                    probe_measures("a", "hh", logistic=(0.9, 0.8, 0.95, 0.5))])
    rows = probe_claims(df)
    assert len(rows) == 5 + 5 + 1
    by = {r["statistic"]: r["verdict"] for r in rows}
    assert by["Kendall tau per word, a / vader"] == "supported"
    assert by["Kendall tau per word, b / vader"] == "not supported"
    assert by["held-out accuracy, a / hh"] == "supported"


def test_overlap_claims():
    ov = pd.DataFrame({"model": ["m"] * 3 + ["k"] * 2, "task": "vader", "layer": [1, 2, 3, 1, 2],
                       "mmcs": [0.6, 0.5, 0.7, 0.4, 0.2], "mmcs_random": [0.3, 0.3, 0.3, 0.3, 0.3]})
    rows = overlap_claims(ov)
    assert [r["verdict"] for r in rows] == ["supported", "not supported"]
    assert rows[0]["value"] == pytest.approx(0.3) and rows[0]["ci_low"] == pytest.approx(0.2)
    assert rows[0]["ci_high"] == pytest.approx(0.4) and rows[0]["n"] == 3
    assert rows[1]["ci_low"] == pytest.approx(-0.1)
    # with per-layer CIs: every layer's CI must clear the chance level
    ov = ov.assign(mmcs_ci_low=ov["mmcs"] - 0.25, mmcs_ci_high=ov["mmcs"] + 0.05)
    rows = overlap_claims(ov)
    assert [r["verdict"] for r in rows] == ["not supported", "not supported"]  # layer 2: 0.25 < 0.3
    assert rows[0]["ci_low"] == pytest.approx(-0.05) and rows[0]["ci_high"] == pytest.approx(0.45)
    assert overlap_claims(ov.assign(mmcs_ci_low=ov["mmcs"] - 0.15))[0]["verdict"] == "supported"


def activity_frame(reason):
    return pd.DataFrame({"model": ["a", "b", "c"], "task": "vader", "diff_high": [0.2, 0.05, np.nan],
                         "diff_high_ci_low": [0.1, -0.02, np.nan], "diff_high_ci_high": [0.3, 0.1, np.nan],
                         "n_high": [40, 40, 0], "n_related": [5, 7, 5], "reason": reason})


def test_activity_claims():
    # an object column holding None, as io.read_table returns it for the per-run activity files
    act = activity_frame(pd.Series([None, None, "no input has a probe prediction > 0.5"], dtype=object))
    rows = activity_claims(act)
    assert [r["verdict"] for r in rows] == ["supported", "not supported", "untestable"]
    assert [r["note"] for r in rows] == ["5 related features", "7 related features",
                                         "no input has a probe prediction > 0.5"]
    assert rows[0]["n"] == 40 and rows[1]["value"] == 0.05
    assert "a / vader" in rows[0]["statistic"]


def test_activity_claims_note_with_nan_reason():
    rows = activity_claims(activity_frame([None, np.nan, "no input has a probe prediction > 0.5"]))
    assert [r["note"] for r in rows[:2]] == ["5 related features", "7 related features"]


def ablation_frame(related, random=None, model="m", task="vader"):
    rows = [dict(condition="model", n=20, diff_vs_sae=0.1, diff_ci_low=0.0, diff_ci_high=0.2),
            dict(condition="sae", n=20, diff_vs_sae=0.0, diff_ci_low=0.0, diff_ci_high=0.0),
            dict(condition="related", n=20, diff_vs_sae=related[0], diff_ci_low=related[1], diff_ci_high=related[2])]
    if random is not None:
        rows.append(dict(condition="random", n=60, diff_vs_sae=random[0], diff_ci_low=random[1],
                         diff_ci_high=random[2]))
    return pd.DataFrame(rows).assign(model=model, task=task)


@pytest.mark.parametrize("related,random,expect", [
    ((-0.5, -0.8, -0.2), (-0.05, -0.2, 0.1), ["supported", "supported"]),
    ((-0.5, -0.8, 0.1), (-0.05, -0.2, 0.1), ["not supported", "supported"]),
    ((-0.5, -0.8, -0.2), (-0.4, -0.6, -0.1), ["supported", "not supported"]),
    ((-0.5, -0.8, 0.0), None, ["not supported"]),
    ((np.nan, np.nan, np.nan), (-0.1, np.nan, np.nan), ["untestable", "untestable"]),
])
def test_ablation_claims(related, random, expect):
    rows = ablation_claims(ablation_frame(related, random))
    assert [r["verdict"] for r in rows] == expect
    assert rows[0]["n"] == 20 and (rows[0]["value"] == related[0] or np.isnan(related[0]))


def test_ablation_claims_skip_runs_without_related_condition():
    df = pd.concat([ablation_frame((-0.5, -0.8, -0.2), model="a"),
                    ablation_frame((-0.5, -0.8, -0.2), model="b").query("condition != 'related'")])
    rows = ablation_claims(df)
    assert len(rows) == 1 and "a / vader" in rows[0]["statistic"]


# --- probes.evaluate ------------------------------------------------------------------------------

def probe_table(n_triples=60, d=30, noise=0.3, seed=0, signal_orthogonal_to=None):
    """Rows x+ / x- per triple with a planted linear signal of word_value in X."""
    rng = np.random.default_rng(seed)
    pos_words = {f"pos{i}": v for i, v in enumerate(np.linspace(0.4, 3.2, 15))}
    neg_words = {f"neg{i}": -v for i, v in enumerate(np.linspace(0.4, 3.2, 15))}
    direction = rng.standard_normal(d)
    if signal_orthogonal_to is not None:
        w = signal_orthogonal_to / np.linalg.norm(signal_orthogonal_to)
        direction -= (direction @ w) * w
    direction /= np.linalg.norm(direction)
    rows = []
    for t in range(n_triples):
        for polarity, pool in (("positive", pos_words), ("negative", neg_words)):
            word = list(pool)[rng.integers(len(pool))]
            rows.append(dict(triple_id=t, polarity=polarity, word=word, word_value=pool[word]))
    table = pd.DataFrame(rows)
    table["label_raw"] = table["word_value"] + rng.normal(0, 0.2, len(table))
    table["label"] = table["label_raw"] * 3.2 / table["label_raw"].abs().max()
    X = table["word_value"].to_numpy()[:, None] * direction * 2 + rng.normal(0, noise, (len(table), d))
    return X.astype(np.float32), table


def xavier_w(d, seed):
    w = torch.empty(1, d)
    torch.nn.init.xavier_uniform_(w, generator=torch.Generator().manual_seed(seed))
    return w.numpy().astype(np.float64).ravel()


@pytest.fixture(scope="module")
def regression():
    d, seed = 30, 4
    X, table = probe_table(d=d, signal_orthogonal_to=xavier_w(d, seed))
    counts = pd.DataFrame({"word": [f"pos{i}" for i in range(15)] + [f"neg{i}" for i in range(10)],
                           "count": np.arange(25) * 3})
    return X, table, counts, evaluate_regression(X, table, test_fraction=0.3, seed=seed, word_counts=counts), seed


def test_regression_probe_recovers_the_planted_signal(regression):
    X, table, _, out, seed = regression
    m = out["measures"]
    assert list(m.columns) == ["measure", "value", "ci_low", "ci_high", "p", "n"]
    mi = m.set_index("measure")
    assert {"kendall_tau", "kendall_tau_negative", "kendall_tau_xavier_baseline", "heldout_r2_delta",
            "ridge_alpha", "sign_accuracy_positive", "sign_accuracy_negative"} <= set(mi.index)
    assert mi.loc["kendall_tau", "value"] > 0.5 and mi.loc["kendall_tau", "p"] < 0.01
    assert mi.loc["kendall_tau_negative", "value"] > 0.3
    assert abs(mi.loc["kendall_tau_xavier_baseline", "value"]) < 0.3
    assert mi.loc["kendall_tau_xavier_baseline", "p"] > 0.01
    assert mi.loc["heldout_r2_delta", "value"] > 0.5
    assert mi.loc["sign_accuracy_positive", "value"] > 0.8 and mi.loc["sign_accuracy_negative", "value"] > 0.8


def test_regression_measures_recomputed_from_the_predictions(regression):
    X, table, _, out, seed = regression
    pred = out["predictions"]
    assert len(pred) == len(table) and list(pred["word"]) == list(table["word"])
    # the split keeps triples whole, and holds out about the asked share of them
    per_triple = pred.groupby("triple_id")["split"].nunique()
    assert (per_triple == 1).all()
    n_test = pred.loc[pred.split == "test", "triple_id"].nunique()
    assert set(pred["split"]) == {"train", "test"} and abs(n_test - 18) <= 1
    # baseline = X w with the Xavier weights of the seed
    np.testing.assert_allclose(pred["baseline"], X.astype(np.float64) @ xavier_w(X.shape[1], seed), rtol=1e-9)
    held = pred[pred.split == "test"]
    words = held.groupby("word").agg(word_value=("word_value", "first"), prediction=("prediction", "mean"),
                                     baseline=("baseline", "mean"))
    mi = out["measures"].set_index("measure")
    for col, name in (("prediction", "kendall_tau"), ("baseline", "kendall_tau_xavier_baseline")):
        res = stats.kendalltau(words["word_value"], words[col])
        assert mi.loc[name, "value"] == pytest.approx(res.statistic)
        assert mi.loc[name, "p"] == pytest.approx(res.pvalue)
        assert mi.loc[name, "n"] == len(words)
    neg = words[words.word_value < 0]
    assert mi.loc["kendall_tau_negative", "value"] == pytest.approx(stats.kendalltau(neg.word_value,
                                                                                      neg.prediction).statistic)
    y, yhat = held["label"].to_numpy(), held["prediction"].to_numpy()
    assert mi.loc["heldout_r2_delta", "value"] == pytest.approx(1 - ((y - yhat) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    pos = words[words.word_value > 0]
    assert mi.loc["sign_accuracy_positive", "value"] == pytest.approx((pos.prediction > 0).mean())
    assert mi.loc["sign_accuracy_positive", "n"] == len(pos)
    w = out["words"].set_index("word")
    np.testing.assert_allclose(w.loc[words.index, "baseline"], words["baseline"])
    # the probe was fitted on train rows only: refitting without the test rows gives the same model
    from lensflow.lfp.probes.fit import fit_linear_probe

    train = (pred.split == "train").to_numpy()
    refit = fit_linear_probe(X[train], table["label"].to_numpy()[train], seed=seed)
    np.testing.assert_allclose(pred["prediction"], refit.predict(X), rtol=1e-6, atol=1e-9)


def test_regression_with_word_counts_reports_spearman(regression):
    X, table, counts, out, seed = regression
    mi = out["measures"].set_index("measure")
    row = mi.loc["abs_error_vs_generation_count_spearman"]
    words = out["words"].merge(counts, on="word", how="left").fillna({"count": 0})
    res = stats.spearmanr((words["prediction"] - words["word_value"]).abs(), words["count"])
    assert row["value"] == pytest.approx(res.statistic) and row["p"] == pytest.approx(res.pvalue)
    assert row["n"] == len(words) and out["frequency"] is not None and len(out["frequency"]) == len(words)
    plain = evaluate_regression(X, table, test_fraction=0.3, seed=seed)
    assert "abs_error_vs_generation_count_spearman" not in set(plain["measures"]["measure"])
    assert plain["frequency"] is None
    assert len(out["sampled"]) == 11 and out["sampled"]["word_value"].is_monotonic_decreasing


def test_regression_measures_feed_the_probe_claims(regression):
    out = regression[3]
    rows = probe_claims(out["measures"].assign(model="m", task="vader"))
    by = {r["statistic"]: r["verdict"] for r in rows}
    assert by["Kendall tau per word, m / vader"] == "supported"
    assert by["Kendall tau per word, Xavier baseline, m / vader"] == "supported"


def test_logistic_probe_on_a_separable_case():
    rng = np.random.default_rng(1)
    n, d = 80, 12
    table = pd.DataFrame({"triple_id": np.repeat(np.arange(n), 2), "polarity": ["positive", "negative"] * n})
    table["word"], table["word_value"] = None, np.nan
    table["label_raw"] = np.where(table.polarity == "positive", 1.0, -1.0) * rng.uniform(0.5, 2, 2 * n)
    table["label"] = table["label_raw"]
    X = np.sign(table["label"].to_numpy())[:, None] * np.eye(d)[0] * 3 + rng.normal(0, 0.5, (2 * n, d))
    out = evaluate_logistic(X, table, test_fraction=0.25, seed=0)
    mi = out["measures"].set_index("measure")
    assert list(out["measures"].columns) == MEASURE_COLUMNS
    assert mi.loc["logistic_accuracy", "value"] > 0.9
    assert mi.loc["logistic_accuracy", "ci_low"] < mi.loc["logistic_accuracy", "value"] <= mi.loc["logistic_accuracy",
                                                                                                  "ci_high"]
    pred = out["predictions"]
    test = pred[pred.split == "test"]
    assert (pred.groupby("triple_id")["split"].nunique() == 1).all()
    assert mi.loc["logistic_accuracy", "n"] == mi.loc["majority_baseline", "n"] == len(test) == 40
    # every triple has one positive and one negative row, so the majority class is right half the time
    assert mi.loc["majority_baseline", "value"] == 0.5
    acc = ((test["prediction"] > 0.5) == (test["label"] > 0)).mean()
    assert mi.loc["logistic_accuracy", "value"] == pytest.approx(acc)


# --- corpus_lexicon -------------------------------------------------------------------------------

LEX = {"good": 1.9, "bad": -2.5, "great": 3.1, "awful": -2.0, "love": 3.2, "ok": 0.9}


def test_corpus_lexicon_counts_whole_words_any_case():
    texts = ["Good film, GOOD acting; good.", "bad bad", "great", "Great!", "awful", "the plot"]
    assert corpus_lexicon(texts, LEX, min_count=2) == {"good": 1.9, "bad": -2.5, "great": 3.1}
    assert corpus_lexicon(texts, LEX, min_count=1) == {"good": 1.9, "bad": -2.5, "great": 3.1, "awful": -2.0}
    assert corpus_lexicon(texts, LEX, min_count=4) == {}


def test_corpus_lexicon_ignores_words_glued_to_others():
    # the documented _WORD rule: letters not glued to letters, digits, underscores, apostrophes or hyphens
    glued = ["good-natured", "feel-good", "goodness", "ungood", "good's", "bad2", "x_bad", "love'", "'ok'"]
    assert corpus_lexicon(glued, LEX, min_count=1) == {}
    assert corpus_lexicon(["good-natured and good", "(bad) \"bad\""], LEX, min_count=1) == {"good": 1.9,
                                                                                            "bad": -2.5}
    assert corpus_lexicon(["good-natured good-hearted good"], LEX, min_count=2) == {}


def test_corpus_lexicon_non_string_texts_and_unknown_words():
    assert corpus_lexicon([None, 3, "ok ok"], LEX, min_count=2) == {"ok": 0.9}
    assert corpus_lexicon(["splendid splendid"], LEX, min_count=1) == {}


def test_ablation_claims_untestable_when_nothing_was_zeroed():
    # With no feature labelled related the "related" condition IS the SAE condition: a 0 [0, 0]
    # difference is no evidence either way.
    df = ablation_frame((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)).assign(n_zeroed=0)
    rows = ablation_claims(df)
    assert [r["verdict"] for r in rows] == ["untestable", "untestable"]
    assert "nothing was zeroed" in rows[0]["note"]
    rows = ablation_claims(ablation_frame((-0.3, -0.5, -0.1)).assign(n_zeroed=4))
    assert rows[0]["verdict"] == "supported"
