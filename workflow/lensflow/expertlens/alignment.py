"""ExpertLens statistics over similarity tables: human alignment, stability, domains, scaling.

Every similarity source (neurons of a model on a data set, or a baseline) is a long table
  concept_a, concept_b, measure, value, both_empty
and every statistic here is a Spearman rho with its bootstrap CI, p-value and n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from lensflow.core.stats import spearman_bootstrap

from .pipeline import covered_pairs


def alignment_rows(similarity: pd.DataFrame, pairs: dict[str, pd.DataFrame], n_boot: int, seed: int) -> pd.DataFrame:
    """Spearman rho between each measure and each human set, over the pairs whose words are concepts.

    pairs: human set name -> (word_a, word_b, score). Also counts covered pairs whose two expert
    sets are both empty (their Jaccard is 0 by convention, which ties them at the bottom).
    """
    rows = []
    for measure, sim in similarity.groupby("measure", sort=False):
        for name, human in pairs.items():
            joined = covered_pairs(sim, human)
            res = spearman_bootstrap(joined["value"].to_numpy(), joined["human"].to_numpy(), n_boot=n_boot, seed=seed)
            rows.append({
                "measure": measure, "pairs": name, **res.as_dict(),
                "n_both_empty": int(joined["both_empty"].sum()) if "both_empty" in joined else 0,
                "n_pairs_total": len(human),
            })
    return pd.DataFrame(rows)


def stability_rows(sims: dict[str, pd.DataFrame], kind: str, fixed: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Spearman between the pairwise-similarity vectors of every two sources, per measure.

    sims: source label (a model, or a data set) -> similarity table; `fixed` names what is held
    constant (the data set when comparing models, the model when comparing data sets). Only
    concept pairs present in both sources are compared.
    """
    rows = []
    labels = list(sims)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            joined = sims[a].merge(sims[b], on=["concept_a", "concept_b", "measure"], suffixes=("_a", "_b"))
            for measure, g in joined.groupby("measure", sort=False):
                res = spearman_bootstrap(g["value_a"].to_numpy(), g["value_b"].to_numpy(), n_boot=n_boot, seed=seed)
                rows.append({"kind": kind, "a": a, "b": b, "fixed": fixed, "measure": measure, **res.as_dict()})
    return pd.DataFrame(rows)


def square(similarity: pd.DataFrame, measure: str) -> tuple[list[str], np.ndarray]:
    """The [c, c] matrix of one measure from the long table (diagonal 1)."""
    s = similarity[similarity["measure"] == measure]
    names = sorted(set(s["concept_a"]) | set(s["concept_b"]))
    pos = {n: i for i, n in enumerate(names)}
    m = np.eye(len(names))
    i, j = s["concept_a"].map(pos).to_numpy(), s["concept_b"].map(pos).to_numpy()
    m[i, j] = m[j, i] = s["value"].to_numpy()
    return names, m


def category_agreement(names: list[str], clusters: np.ndarray, categories: dict[str, str] | None) -> dict:
    """Adjusted Rand index between the clustering and human category labels, over the labelled
    concepts only (the others are left out, not given a category of their own)."""
    if not categories:
        return {"ari": float("nan"), "n_labelled": 0, "note": "no category labels configured"}
    keep = [i for i, n in enumerate(names) if n in categories]
    if len(keep) < 3:
        return {"ari": float("nan"), "n_labelled": len(keep), "note": "fewer than 3 labelled concepts"}
    truth = [categories[names[i]] for i in keep]
    if len(set(truth)) < 2:
        return {"ari": float("nan"), "n_labelled": len(keep), "note": "the labelled concepts share one category"}
    return {"ari": float(adjusted_rand_score(truth, np.asarray(clusters)[keep])), "n_labelled": len(keep), "note": ""}


# ARIs of equal contingency tables may differ in the last bits (sums in another order); a shuffle
# that reproduces the observed agreement must count as "at least as large".
_ARI_TIE = 1e-12


def permutation_ari(names, clusters, categories, n_perm: int = 1000, seed: int = 0) -> float:
    """p-value of the ARI under shuffled category labels (is the agreement better than chance?):
    (1 + #{shuffles with ARI >= observed}) / (n_perm + 1), labels shuffled among the labelled concepts."""
    observed = category_agreement(names, clusters, categories)["ari"]
    if np.isnan(observed):
        return float("nan")
    keep = [i for i, n in enumerate(names) if n in categories]
    truth = np.array([categories[names[i]] for i in keep])
    kept = np.asarray(clusters)[keep]
    rng = np.random.default_rng(seed)
    null = np.array([adjusted_rand_score(rng.permutation(truth), kept) for _ in range(n_perm)])
    return float((1 + np.sum(null >= observed - _ARI_TIE)) / (n_perm + 1))


def domain_agreement(names: list[str], clusters: np.ndarray, labels: pd.DataFrame, n_perm: int, seed: int) -> dict:
    """ARI of the clusters vs the labels, its permutation p and the labels' coverage.

    labels: concept, category (missing where a concept has none), one row per name.
    """
    got = labels.dropna(subset=["category"])
    categories = dict(zip(got["concept"], got["category"])) or None
    agreement = category_agreement(names, clusters, categories)
    unlabelled = [n for n in names if not categories or n not in categories]
    return {**agreement, "p_permutation": permutation_ari(names, clusters, categories, n_perm=n_perm, seed=seed),
            "n_categories": len(set(categories.values())) if categories else 0,
            "coverage": (len(names) - len(unlabelled)) / len(names) if names else 0.0,
            "unlabelled": ", ".join(unlabelled)}


def spearman_diff_bootstrap(x1, x2, y, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict:
    """rho(x1, y) - rho(x2, y) on the same pairs, with a paired percentile bootstrap CI.

    Resampling the same pairs for both measures keeps their correlation, so the interval is the
    right one for "does measure 1 align better than measure 2 on these pairs".
    """
    from scipy import stats as st

    from lensflow.core.stats import percentile_ci, _rowwise_pearson

    x1, x2, y = (np.asarray(v, dtype=np.float64) for v in (x1, x2, y))
    n = y.size
    if n < 3:
        return {"diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "n": n}
    diff = st.spearmanr(x1, y)[0] - st.spearmanr(x2, y)[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # [n_boot, n]
    ry = st.rankdata(y[idx], axis=1)
    boot = _rowwise_pearson(st.rankdata(x1[idx], axis=1), ry) - _rowwise_pearson(st.rankdata(x2[idx], axis=1), ry)
    lo, hi = percentile_ci(boot, ci)
    finite = boot[np.isfinite(boot)]
    # two-sided bootstrap p-value for diff = 0: how often the resampled difference crosses zero
    p = float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean()))) if finite.size else np.nan
    return {"diff": float(diff), "ci_low": lo, "ci_high": hi, "p": p, "n": n}


def scaling_table(alignment: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Neuron alignment of the final models (no checkpoints) with their sizes, for the scaling figure."""
    a = alignment[(alignment["source_type"] == "neurons") & alignment["model"].isin(models)]
    return a[["model", "n_params", "dataset", "measure", "pairs", "rho", "ci_low", "ci_high", "n"]].reset_index(drop=True)


def dynamics_table(alignment: pd.DataFrame) -> pd.DataFrame:
    """Neuron alignment of checkpoints '<model>@step<N>' with the training step N."""
    a = alignment[(alignment["source_type"] == "neurons") & alignment["model"].str.contains("@")].copy()
    parts = a["model"].str.split("@", n=1, expand=True) if len(a) else pd.DataFrame(columns=[0, 1])
    a["model"], a["revision"] = parts[0], parts[1]
    a["step"] = pd.to_numeric(a["revision"].str.extract(r"(\d+)$")[0], errors="coerce")
    cols = ["model", "revision", "step", "dataset", "measure", "pairs", "rho", "ci_low", "ci_high", "n"]
    return a.dropna(subset=["step"])[cols].sort_values(["model", "step"]).reset_index(drop=True)
