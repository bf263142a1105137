"""Base-model control for the probes: is the feedback pattern LEARNED in fine-tuning?

The paper fits its probes on the tuned model only. A substituted word's activations carry its
sentiment whether or not the model was tuned on the VADER reward, so a probe that ranks words well
on the tuned model may be reading what the base model already knew. The control runs the same
pipeline (activations at the same layers, AE_n, probe data, probe, same triples and split) on the
base model and compares the two probes on the same held-out words (VADER: Kendall tau) or rows
(hh / toxic: logistic accuracy), with a paired bootstrap CI of tuned minus base.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lensflow.core.stats import percentile_ci

from .evaluate import MEASURE_COLUMNS
from .fit import CONFIDENCE


def _ci(draws: np.ndarray) -> tuple[float, float]:
    return percentile_ci(draws, CONFIDENCE)


def _tau(value: np.ndarray, pred: np.ndarray) -> float:
    return float(stats.kendalltau(value, pred).statistic) if len(value) > 1 else float("nan")


def paired_words(tuned: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """The held-out words both probes predicted: DataFrame(word, word_value, tuned, base)."""
    both = tuned[["word", "word_value", "prediction"]].merge(
        base[["word", "word_value", "prediction"]], on="word", suffixes=("", "_base"))
    if not np.allclose(both["word_value"], both["word_value_base"]):
        raise ValueError("the tuned and base probe tables give a word different lexicon values")
    return both.rename(columns={"prediction": "tuned", "prediction_base": "base"})[["word", "word_value", "tuned",
                                                                                  "base"]]


def kendall_control(tuned: pd.DataFrame, base: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Kendall tau per word on the tuned and the base model, and their difference.

    tuned, base: per-word test tables (word, word_value, prediction). Words are resampled with
    replacement, the same draw for both models, n_boot times: percentile CIs for each tau and for
    tuned - base. The taus' p-values are scipy's; the difference's is the bootstrap share of
    draws with tuned <= base (one-sided: the claim is that tuning adds to what the base has).
    """
    w = paired_words(tuned, base)
    value, t, b = (w[c].to_numpy(float) for c in ("word_value", "tuned", "base"))  # [n_words] each
    n = len(w)
    rng = np.random.default_rng(seed)
    draws = np.full((n_boot, 2), np.nan)  # [n_boot, (tuned, base)]
    for i in range(n_boot if n > 1 else 0):
        idx = rng.integers(0, n, n)
        draws[i] = _tau(value[idx], t[idx]), _tau(value[idx], b[idx])
    tau_t, tau_b = _tau(value, t), _tau(value, b)
    diff = draws[:, 0] - draws[:, 1]
    ok = np.isfinite(diff)
    p_diff = float((diff[ok] <= 0).mean()) if ok.any() else float("nan")
    p = [float(stats.kendalltau(value, x).pvalue) if n > 1 else float("nan") for x in (t, b)]
    rows = [("kendall_tau_tuned_model", tau_t, *_ci(draws[:, 0]), p[0]),
            ("kendall_tau_base_model", tau_b, *_ci(draws[:, 1]), p[1]),
            ("kendall_tau_tuned_minus_base", tau_t - tau_b, *_ci(diff), p_diff)]
    return pd.DataFrame([(*r, float(n)) for r in rows], columns=MEASURE_COLUMNS)


def paired_rows(tuned: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Held-out rows of both logistic probes, matched by (triple_id, polarity):
    DataFrame(triple_id, polarity, label, tuned, base) with tuned/base = P(positive)."""
    keys = ["triple_id", "polarity"]
    t = tuned[tuned["split"] == "test"][[*keys, "label", "prediction"]]
    b = base[base["split"] == "test"][[*keys, "label", "prediction"]]
    both = t.merge(b, on=keys, suffixes=("", "_base"))
    if len(both) != len(t) or len(both) != len(b):
        raise ValueError(f"the tuned and base probes held out different rows ({len(t)} vs {len(b)}, {len(both)} shared)")
    return both.rename(columns={"prediction": "tuned", "prediction_base": "base"})[[*keys, "label", "tuned", "base"]]


def accuracy_control(tuned: pd.DataFrame, base: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Held-out accuracy of the logistic probe on the tuned and the base model, and the difference,
    with a paired bootstrap over rows (tuned, base: probe prediction tables with split/label/prediction).
    A prediction > 0.5 means "positive", the label's sign the truth."""
    r = paired_rows(tuned, base)
    truth = r["label"].to_numpy(float) > 0  # [n]
    correct = np.stack([(r[c].to_numpy(float) > 0.5) == truth for c in ("tuned", "base")], axis=1)  # [n, 2]
    n = len(r)
    rng = np.random.default_rng(seed)
    draws = np.array([correct[rng.integers(0, n, n)].mean(axis=0) for _ in range(n_boot if n else 0)])
    draws = draws.reshape(-1, 2)  # [n_boot, 2]
    acc = correct.mean(axis=0) if n else np.full(2, np.nan)
    diff = draws[:, 0] - draws[:, 1]
    p_diff = float((diff <= 0).mean()) if n else float("nan")
    rows = [("logistic_accuracy_tuned_model", acc[0], *_ci(draws[:, 0]), np.nan),
            ("logistic_accuracy_base_model", acc[1], *_ci(draws[:, 1]), np.nan),
            ("logistic_accuracy_tuned_minus_base", acc[0] - acc[1], *_ci(diff), p_diff)]
    return pd.DataFrame([(*row, float(n)) for row in rows], columns=MEASURE_COLUMNS)
