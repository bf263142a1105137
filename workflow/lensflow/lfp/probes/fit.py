"""LFP probes and their evaluation (paper §3.3, §4.1; Tables 2-5, 9, 10; Figs. 4-5; spec item 8).

How closely a tuned model's learned feedback patterns track the true feedback is measured by a
probe on its SAE codes (inputs from `data.probe_dataset`):
  * VADER task: a linear regression whose per-word predictions are compared with the lexicon
    (Kendall tau, Table 4 / 10; sign accuracy, Table 5; sampled words, Tables 2 / 9; error vs
    how often the policy generates the word, Fig. 4); the baseline is an untrained
    Xavier-initialised linear model (§4.1).
  * hh / toxic tasks: a logistic regression on the label's sign, held-out accuracy (Table 3),
    and a PCA of its inputs (Fig. 5).

Kendall tau is computed on the (lexicon value, prediction) pairs of each word, aligned by word.
The authors' code correlated two independently sorted lists of word strings (spec, known
defects), which measures nothing about the probe; this module never sorts before correlating.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GroupShuffleSplit, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

RIDGE_ALPHAS = np.logspace(-3, 6, 19)  # L2 strengths searched by cross-validation
LOGISTIC_C = 1.0  # inverse L2 strength on standardised codes (sklearn's default; the paper gives none)
CONFIDENCE = 0.95


# ------------------------------------------------------------------------------------ fitting
def split_by_triple(table: pd.DataFrame, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask [n_rows]: a seeded GroupShuffleSplit over triple_id, so the x+ and x- of
    one triple (which share a neutral reference) never sit on both sides of the split."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    split = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    _, test = next(split.split(table, groups=table["triple_id"].to_numpy()))
    mask = np.zeros(len(table), dtype=bool)
    mask[test] = True
    return mask


def fit_linear_probe(X: np.ndarray, y: np.ndarray, seed: int = 0, cv: int | None = None) -> RidgeCV:
    """Linear regression probe (VADER task) with an L2 penalty chosen by cross-validation.

    The probe input has (5 layers x d_hidden) = thousands of features, usually more than there
    are labelled rows, so ordinary least squares would interpolate the labels; RidgeCV picks the
    penalty from RIDGE_ALPHAS. cv=None uses the efficient leave-one-out (generalised CV) path,
    which is deterministic; cv=k uses a KFold(k) shuffled with `seed`. The chosen penalty is the
    fitted estimator's `alpha_`.
    """
    splitter = None if cv is None else KFold(cv, shuffle=True, random_state=seed)
    return RidgeCV(alphas=RIDGE_ALPHAS, cv=splitter).fit(np.asarray(X, np.float64), np.asarray(y, np.float64))


def xavier_baseline(d_in: int, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The paper's untrained baseline (§4.1): y = X w with w [1, d_in] Xavier-uniform (bias 0),
    drawn by torch.nn.init.xavier_uniform_ from a generator seeded with `seed`."""
    import torch  # only the baseline needs it; keeps the probe job light

    w = torch.empty(1, d_in)
    torch.nn.init.xavier_uniform_(w, generator=torch.Generator().manual_seed(seed))
    w = w.numpy().astype(np.float64).ravel()  # [d_in]

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(X, np.float64) @ w  # [n]

    return predict


def fit_logistic_probe(X: np.ndarray, y_sign: np.ndarray, test_mask: np.ndarray, seed: int = 0) -> dict:
    """Logistic probe on the label sign (hh / toxic tasks, Table 3).

    Standardised inputs, L2 logistic regression with C = LOGISTIC_C, trained on ~test_mask rows.
    Returns accuracy on the test rows with its Wilson interval (scipy binomtest), n_test, the
    majority baseline (accuracy of always predicting the training set's most common class) and
    the fitted pipeline as `model`.
    """
    X, test = np.asarray(X, np.float64), np.asarray(test_mask, bool)
    y = np.sign(np.asarray(y_sign, np.float64))  # [n] in {-1, 0, 1}; bool labels map to {0, 1}
    if test.sum() == 0 or (~test).sum() == 0:
        raise ValueError("test_mask must leave rows on both sides of the split")
    if len(np.unique(y[~test])) < 2:
        raise ValueError("the training rows hold a single class; a classifier cannot be fitted")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=5000, random_state=seed))
    model.fit(X[~test], y[~test])
    correct = int((model.predict(X[test]) == y[test]).sum())
    values, counts = np.unique(y[~test], return_counts=True)
    majority = float((y[test] == values[np.argmax(counts)]).mean())
    low, high = _wilson(correct, int(test.sum()))
    return {"accuracy": correct / int(test.sum()), "ci_low": low, "ci_high": high, "n_test": int(test.sum()),
            "majority_baseline": majority, "model": model}


def pca_coords(X: np.ndarray, n_components: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(coords [n, n_components], explained_variance_ratio [n_components]) of the probe inputs (Fig. 5)."""
    pca = PCA(n_components=n_components, random_state=seed)
    coords = pca.fit_transform(np.asarray(X, np.float64))
    return coords, pca.explained_variance_ratio_


# -------------------------------------------------------------------------------- per word
def per_word(table_test: pd.DataFrame, pred: np.ndarray) -> pd.DataFrame:
    """Mean prediction per substituted word: DataFrame(word, word_value, prediction, n), by word."""
    pred = np.asarray(pred, np.float64).ravel()
    if len(pred) != len(table_test):
        raise ValueError(f"{len(pred)} predictions for {len(table_test)} rows")
    df = table_test[["word", "word_value"]].assign(prediction=pred).dropna(subset=["word"])
    if df.empty:
        raise ValueError("no row has a word (rewrite triples have none; use the logistic probe)")
    if (df.groupby("word")["word_value"].nunique() > 1).any():
        raise ValueError("a word carries more than one word_value")
    out = df.groupby("word", sort=True).agg(word_value=("word_value", "first"), prediction=("prediction", "mean"),
                                           n=("prediction", "size"))
    return out.reset_index()


def kendall_by_word(per_word_df: pd.DataFrame) -> dict:
    """Kendall tau-b (scipy) between each word's lexicon value and its mean prediction, the two
    read from the same row: dict(tau, p, n_words). NaN tau/p with fewer than 2 words."""
    n = len(per_word_df)
    if n < 2:
        return {"tau": float("nan"), "p": float("nan"), "n_words": n}
    res = stats.kendalltau(per_word_df["word_value"].to_numpy(float), per_word_df["prediction"].to_numpy(float))
    return {"tau": float(res.statistic), "p": float(res.pvalue), "n_words": n}


def kendall_negative(per_word_df: pd.DataFrame) -> dict:
    """Table 10: kendall_by_word restricted to words with a negative lexicon value."""
    return kendall_by_word(per_word_df[per_word_df["word_value"] < 0])


def _wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def sign_accuracy(per_word_df: pd.DataFrame) -> pd.DataFrame:
    """Table 5: share of positive (negative) words whose prediction is > 0 (< 0), with a 95%
    Wilson interval: DataFrame(polarity, n_words, accuracy, ci_low, ci_high). Words with value 0
    belong to neither row; a polarity with no word gets NaN accuracy."""
    value, pred = per_word_df["word_value"].to_numpy(float), per_word_df["prediction"].to_numpy(float)
    rows = []
    for polarity, has, right in (("positive", value > 0, pred > 0), ("negative", value < 0, pred < 0)):
        n, k = int(has.sum()), int((has & right).sum())
        rows.append((polarity, n, k / n if n else float("nan"), *_wilson(k, n)))
    return pd.DataFrame(rows, columns=["polarity", "n_words", "accuracy", "ci_low", "ci_high"])


def sample_words(per_word_df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Tables 2 / 9: `n` words drawn at random (all if fewer), listed by descending lexicon value."""
    picked = per_word_df.sample(n=min(n, len(per_word_df)), random_state=seed)
    return picked.sort_values(["word_value", "word"], ascending=[False, True]).reset_index(drop=True)


def error_vs_frequency(per_word_df: pd.DataFrame, word_counts: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Fig. 4: |prediction - lexicon value| per word against how often the tuned policy generates it.

    word_counts: DataFrame(word, count); words absent from it count 0. Returns
    (DataFrame(word, abs_error, count), dict(rho, p, n)) with Spearman's rho (scipy) between
    abs_error and count; NaN rho/p with fewer than 3 words or a constant column.
    """
    counts = word_counts.groupby("word", as_index=False)["count"].sum()
    merged = per_word_df[["word", "word_value", "prediction"]].merge(counts, on="word", how="left")
    merged["count"] = merged["count"].fillna(0).astype(int)
    merged["abs_error"] = (merged["prediction"] - merged["word_value"]).abs()
    merged = merged[["word", "abs_error", "count"]]
    n = len(merged)
    if n < 3 or merged["abs_error"].nunique() < 2 or merged["count"].nunique() < 2:
        return merged, {"rho": float("nan"), "p": float("nan"), "n": n}
    res = stats.spearmanr(merged["abs_error"], merged["count"])
    return merged, {"rho": float(res.statistic), "p": float(res.pvalue), "n": n}
