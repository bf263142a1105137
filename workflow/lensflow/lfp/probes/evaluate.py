"""One probe experiment end to end (LFP §3.3-4.1): split, fit, predict, and every statistic the
paper reports, as one long "measures" table (measure, value, ci_low, ci_high, p, n).

VADER-like tasks: a ridge probe on the activation deltas, judged per word against the lexicon
(Tables 2, 4, 5, 9, 10, Fig. 4), next to the paper's untrained Xavier baseline. Rewrite tasks
(hh / toxic): a logistic probe on the label's sign, judged by held-out accuracy (Table 3).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .fit import (error_vs_frequency, fit_linear_probe, fit_logistic_probe, kendall_by_word, kendall_negative,
                  per_word, sample_words, sign_accuracy, split_by_triple, xavier_baseline)

MEASURE_COLUMNS = ["measure", "value", "ci_low", "ci_high", "p", "n"]


def _row(measure, value, ci_low=np.nan, ci_high=np.nan, p=np.nan, n=np.nan) -> dict:
    return dict(zip(MEASURE_COLUMNS, (measure, float(value), float(ci_low), float(ci_high), float(p), float(n))))


def _kendall_rows(words: pd.DataFrame, suffix: str) -> list[dict]:
    all_, neg = kendall_by_word(words), kendall_negative(words)
    return [_row(f"kendall_tau{suffix}", all_["tau"], p=all_["p"], n=all_["n_words"]),
            _row(f"kendall_tau_negative{suffix}", neg["tau"], p=neg["p"], n=neg["n_words"])]


def evaluate_regression(X: np.ndarray, table: pd.DataFrame, *, test_fraction: float, seed: int,
                        word_counts: pd.DataFrame | None = None, n_sample_words: int = 11) -> dict:
    """Ridge probe vs Xavier baseline on held-out triples.

    Returns {"predictions": table + split/prediction/baseline columns for every row,
    "words": per-word test table (prediction and baseline), "measures": long table,
    "sampled": Tables 2/9 rows, "frequency": Fig. 4 rows (or None without word_counts)}.
    """
    test = split_by_triple(table, test_fraction, seed)
    probe = fit_linear_probe(X[~test], table["label"].to_numpy()[~test], seed=seed)
    baseline = xavier_baseline(X.shape[1], seed)
    pred, base = probe.predict(X), baseline(X)  # [n] each
    rows = table.assign(split=np.where(test, "test", "train"), prediction=pred, baseline=base)
    held = rows[test]
    words = per_word(held, held["prediction"].to_numpy())
    words_base = per_word(held, held["baseline"].to_numpy())
    y, yhat = held["label"].to_numpy(), held["prediction"].to_numpy()
    r2 = 1 - ((y - yhat) ** 2).sum() / ((y - y.mean()) ** 2).sum() if len(y) > 1 else np.nan
    measures = [*_kendall_rows(words, ""), *_kendall_rows(words_base, "_xavier_baseline"),
                _row("heldout_r2_delta", r2, n=len(held)), _row("ridge_alpha", probe.alpha_)]
    for _, s in sign_accuracy(words).iterrows():
        measures.append(_row(f"sign_accuracy_{s['polarity']}", s["accuracy"], s["ci_low"], s["ci_high"],
                             n=s["n_words"]))
    frequency = None
    if word_counts is not None:
        frequency, rho = error_vs_frequency(words, word_counts)
        measures.append(_row("abs_error_vs_generation_count_spearman", rho["rho"], p=rho["p"], n=rho["n"]))
    words = words.merge(words_base[["word", "prediction"]].rename(columns={"prediction": "baseline"}), on="word")
    return {"predictions": rows, "words": words, "measures": pd.DataFrame(measures),
            "sampled": sample_words(words, n_sample_words, seed), "frequency": frequency}


def evaluate_logistic(X: np.ndarray, table: pd.DataFrame, *, test_fraction: float, seed: int) -> dict:
    """Logistic probe on sign(label) with held-out accuracy and the majority-class baseline."""
    test = split_by_triple(table, test_fraction, seed)
    fit = fit_logistic_probe(X, table["label"].to_numpy(), test, seed=seed)
    proba = fit["model"].predict_proba(np.asarray(X, np.float64))[:, -1]  # P(positive) [n]
    rows = table.assign(split=np.where(test, "test", "train"), prediction=proba)
    measures = [_row("logistic_accuracy", fit["accuracy"], fit["ci_low"], fit["ci_high"], n=fit["n_test"]),
                _row("majority_baseline", fit["majority_baseline"], n=fit["n_test"])]
    return {"predictions": rows, "words": None, "measures": pd.DataFrame(measures), "sampled": None,
            "frequency": None}
