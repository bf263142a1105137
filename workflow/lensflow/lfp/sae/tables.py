"""Summaries of the SAE experiments: reconstruction/sparsity per variant (Tables 11, 12, Fig. 8)
and feature overlap per layer (Fig. 3), each with the comparison the paper draws.

Variants are compared with AE_n on the same layers where they can be (paired over layers, a t
interval: 5 layers are too few for a bootstrap); the lowest-divergence variant sits on other
layers, so it is compared unpaired (Welch).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lensflow.core.stats import bootstrap_mean

from .overlap import feature_overlap

KEYS = ["model", "task", "variant"]
MEASURES = ["heldout_mse", "heldout_fvu", "heldout_fvu_per_dim", "heldout_l0", "heldout_dead_fraction"]


def _diff_ci(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float, float, float]:
    """(mean diff a-b, low, high, p) with a 95% t interval; NaNs when too few values."""
    if len(a) < 2 or len(b) < 2:
        return (float(np.mean(a) - np.mean(b)) if len(a) and len(b) else np.nan, np.nan, np.nan, np.nan)
    res = stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    diff = float(np.mean(a - b)) if paired else float(np.mean(a) - np.mean(b))
    return diff, float(ci.low), float(ci.high), float(res.pvalue)


def sae_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, variant): settings, mean measures over layers, and for every
    variant but AE_n the difference from AE_n in held-out FVU and L0 with a 95% CI."""
    rows = []
    for (model, task, variant), g in metrics.groupby(KEYS, sort=False):
        ref = metrics[(metrics.model == model) & (metrics.task == task) & (metrics.variant == "n")]
        row = {"model": model, "task": task, "variant": variant, "width": int(g["width"].iloc[0]),
               "tied": bool(g["tied"].iloc[0]), "alpha": float(g["alpha"].iloc[0]),
               "selection": g["selection"].iloc[0], "layers": ",".join(map(str, sorted(g["layer"]))),
               **{m: float(g[m].mean()) for m in MEASURES}}
        if variant != "n" and len(ref):
            paired = set(g["layer"]) == set(ref["layer"])
            a, b = g.sort_values("layer"), ref.sort_values("layer")
            for m in ("heldout_fvu", "heldout_l0"):
                d, lo, hi, pv = _diff_ci(a[m].to_numpy(), b[m].to_numpy(), paired)
                row.update({f"{m}_vs_n": d, f"{m}_vs_n_low": lo, f"{m}_vs_n_high": hi, f"{m}_vs_n_p": pv})
            row["comparison"] = "paired over layers" if paired else "unpaired (other layers)"
        rows.append(row)
    return pd.DataFrame(rows)


def random_mmcs(d_in: int, n_small: int, n_big: int, seed: int = 0) -> float:
    """MMCS of two random Gaussian dictionaries of the same shapes: the chance level of Fig. 3."""
    rng = np.random.default_rng(seed)
    _, mmcs = feature_overlap(rng.standard_normal((n_small, d_in)), rng.standard_normal((n_big, d_in)))
    return mmcs


def overlap_summary(overlap: pd.DataFrame, n_features: int, d_in: int, n_small: int, n_big: int,
                    seed: int = 0, chance: float | None = None) -> pd.DataFrame:
    """Per layer: MMCS with a percentile bootstrap 95% CI over AE_n's features, its chance level, and
    the matched cosine of the top n_features (explained)."""
    if chance is None:  # lfp_overlap computes it once and stores it in the overlap table's metadata
        chance = random_mmcs(d_in, n_small, n_big, seed)
    rows = []
    for layer, g in overlap.groupby("layer"):
        top = g.nlargest(n_features, "cosine")["cosine"]
        ci = bootstrap_mean(g.sort_values("small_feature")["cosine"].to_numpy(float), seed=seed + int(layer))
        rows.append({"layer": int(layer), "mmcs": ci.mean, "mmcs_ci_low": ci.ci_low, "mmcs_ci_high": ci.ci_high,
                     "mmcs_random": chance,
                     "top_mean_cosine": float(top.mean()), "top_min_cosine": float(top.min()),
                     "n_features": len(g), "frac_cos_above_0.7": float((g["cosine"] > 0.7).mean())})
    return pd.DataFrame(rows)
