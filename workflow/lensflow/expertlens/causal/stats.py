"""Statistics of the ExpertLens causal check: per-prompt conditions -> tidy summary with intervals.

check.py runs the experiment and calls `summarise`; measures.py holds the per-prompt measures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): mean ± t_{n-1} * sd / sqrt(n); NaN bounds with fewer than 2 values."""
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return mean, mean - half, mean + half


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; NaN when all are zero."""
    d = np.asarray(d, dtype=np.float64)
    if not np.any(d != 0):
        return np.nan
    return float(stats.wilcoxon(d).pvalue)


def ratio_interval(num: np.ndarray, den: np.ndarray, seed: int = 0, n_boot: int = 2000,
                   level: float = 0.95) -> tuple[float, float, float]:
    """(mean(num)/mean(den), percentile bootstrap CI), resampling prompts (pairs kept together)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))  # [n_boot, n_prompts]
    with np.errstate(divide="ignore", invalid="ignore"):
        point = num.mean() / den.mean()
        boot = num[idx].mean(axis=1) / den[idx].mean(axis=1)  # [n_boot]
    # inverted_cdf picks observed values, so a bootstrap ratio of inf (baseline mean 0) stays an honest
    # inf bound instead of turning into NaN by interpolation; 0/0 resamples are dropped.
    q = [0.5 - level / 2, 0.5 + level / 2]
    lo, hi = np.nanquantile(boot, q, method="inverted_cdf") if not np.isnan(boot).all() else (np.nan, np.nan)
    return float(point), float(lo), float(hi)


def summarise(table: pd.DataFrame, k: int, n_random: int, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Tidy summary, one row per (concept, measure, condition).

    Conditions: baseline, experts, random (per prompt the mean over draws, then over prompts),
    experts-random and experts-baseline (paired per prompt; t CI, Wilcoxon p), experts/baseline
    (ratio of means, bootstrap CI; not for the log-probability). random_sd is the SD of the per-draw
    means, i.e. how much the control depends on which random units were drawn.
    """
    measures = [m for m in ("p", "logp", "gen_rate") if m in table.columns]
    rows = []
    for concept, t in table.groupby("concept", sort=False):
        for m in measures:
            wide = t.pivot(index="prompt_id", columns=["condition", "draw"], values=m)  # [n, conditions]
            base, exp = wide[("baseline", -1)].to_numpy(), wide[("experts", -1)].to_numpy()
            has_random = "random" in wide.columns.get_level_values(0)
            rand_draws = wide["random"].to_numpy() if has_random else None  # [n, n_random]
            rand = rand_draws.mean(axis=1) if rand_draws is not None else None
            n = len(base)
            cells = [("baseline", t_interval(base), np.nan), ("experts", t_interval(exp), np.nan),
                     ("experts-baseline", t_interval(exp - base), wilcoxon_p(exp - base))]
            if rand is not None:
                cells += [("random", t_interval(rand), np.nan),
                          ("experts-random", t_interval(exp - rand), wilcoxon_p(exp - rand))]
            if m != "logp":
                cells.append(("experts/baseline", ratio_interval(exp, base, seed, n_boot), np.nan))
            for condition, (mean, lo, hi), p in cells:
                rows.append({"concept": concept, "measure": m, "condition": condition, "mean": mean, "ci_low": lo,
                             "ci_high": hi, "p_value": p, "n_prompts": n, "k": k, "n_random": n_random,
                             "random_sd": float(rand_draws.mean(axis=0).std(ddof=1))
                             if condition == "random" and rand_draws.shape[1] > 1 else np.nan})
    return pd.DataFrame(rows)
