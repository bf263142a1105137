"""Base-model control of the probes (lensflow.lfp.probes.base_control, lensflow.lfp.claims.control_claims)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lensflow.lfp.claims import control_claims
from lensflow.lfp.probes.base_control import accuracy_control, kendall_control, paired_rows, paired_words


def words(values, preds, names=None):
    names = names or [f"w{i}" for i in range(len(values))]
    return pd.DataFrame({"word": names, "word_value": values, "prediction": preds})


def test_kendall_control_matches_scipy_and_pairs_words_by_name():
    rng = np.random.default_rng(0)
    value = rng.normal(size=40)
    tuned = words(value, value + rng.normal(scale=0.3, size=40))
    base = words(value, rng.normal(size=40))
    out = kendall_control(tuned, base.sample(frac=1, random_state=1), n_boot=300, seed=0).set_index("measure")
    t = stats.kendalltau(value, tuned["prediction"]).statistic
    b = stats.kendalltau(value, base["prediction"]).statistic
    assert out.loc["kendall_tau_tuned_model", "value"] == pytest.approx(t)
    assert out.loc["kendall_tau_base_model", "value"] == pytest.approx(b)
    d = out.loc["kendall_tau_tuned_minus_base"]
    assert d["value"] == pytest.approx(t - b) and d["ci_low"] < d["value"] < d["ci_high"]
    assert d["ci_low"] > 0 and d["p"] < 0.01 and d["n"] == 40


def test_kendall_control_identical_probes_give_zero_difference():
    value = np.linspace(-3, 3, 30)
    pred = np.sin(value)
    out = kendall_control(words(value, pred), words(value, pred), n_boot=200, seed=0).set_index("measure")
    d = out.loc["kendall_tau_tuned_minus_base"]
    assert d["value"] == 0 and d["ci_low"] == 0 and d["ci_high"] == 0 and d["p"] == 1.0


def test_paired_words_keeps_shared_words_and_rejects_conflicting_values():
    both = paired_words(words([1.0, 2.0, 3.0], [0, 1, 2], ["a", "b", "c"]), words([2.0, 3.0], [5, 6], ["b", "c"]))
    assert both["word"].tolist() == ["b", "c"] and both["base"].tolist() == [5, 6]
    with pytest.raises(ValueError, match="different lexicon values"):
        paired_words(words([1.0], [0], ["a"]), words([-1.0], [0], ["a"]))


def preds(correct_tuned, correct_base):
    n = len(correct_tuned)
    label = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    rows = pd.DataFrame({"triple_id": np.arange(n) // 2, "polarity": np.where(label > 0, "positive", "negative"),
                         "label": label, "split": "test"})
    def p(correct):
        return np.where(np.asarray(correct) == (label > 0), 0.9, 0.1)
    return rows.assign(prediction=p(correct_tuned)), rows.assign(prediction=p(correct_base))


def test_accuracy_control_counts_correct_rows_and_pairs_by_triple():
    n = 40
    tuned, base = preds(np.ones(n, bool), np.arange(n) % 4 != 0)  # base wrong on every 4th row
    out = accuracy_control(tuned, base.iloc[::-1], n_boot=300, seed=0).set_index("measure")
    assert out.loc["logistic_accuracy_tuned_model", "value"] == 1.0
    assert out.loc["logistic_accuracy_base_model", "value"] == 0.75
    d = out.loc["logistic_accuracy_tuned_minus_base"]
    assert d["value"] == pytest.approx(0.25) and d["ci_low"] > 0 and d["n"] == n


def test_paired_rows_refuses_different_held_out_rows():
    tuned, base = preds(np.ones(8, bool), np.ones(8, bool))
    with pytest.raises(ValueError, match="different rows"):
        paired_rows(tuned, base.iloc[:6])


def test_control_claims_verdict_follows_the_interval():
    rows = []
    for model, low in (("up", 0.05), ("flat", -0.1)):
        rows += [dict(measure="kendall_tau_base_model", value=0.3, ci_low=0.2, ci_high=0.4, p=0.01, n=50,
                      model=model, task="vader"),
                 dict(measure="kendall_tau_tuned_minus_base", value=0.1, ci_low=low, ci_high=0.2, p=0.02, n=50,
                      model=model, task="vader")]
    claims = control_claims(pd.DataFrame(rows))
    assert [c["verdict"] for c in claims] == ["supported", "not supported"]
    assert "base model: 0.300" in claims[0]["note"]
