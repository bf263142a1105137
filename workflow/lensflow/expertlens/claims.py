"""The ExpertLens paper's claims against this run's measurements: each claim, the statistic this run
measured (with CI or p), and a verdict by lensflow.core.claims' rules. Nothing here is tuned to pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensflow.core.claims import claim_row

from .alignment import spearman_diff_bootstrap
from .naming import headline_measure, jaccard_tau
from .pipeline import covered_pairs


def alignment_claims(alignment: pd.DataFrame, measure: str) -> list[dict]:
    """ExpertLens similarity correlates positively with human judgments (per model, data set, human set)."""
    rows = []
    neurons = alignment[(alignment["source_type"] == "neurons") & (alignment["measure"] == measure)
                        & ~alignment["model"].str.contains("@")]
    for r in neurons.itertuples():
        rows.append(claim_row(
            f"ExpertLens similarity ({measure}) aligns with human judgments",
            f"Spearman rho, {r.model} / {r.dataset} vs {r.pairs}", r.rho, r.ci_low, r.ci_high, r.p, r.n,
            note=f"{r.n_both_empty} covered pairs have both expert sets empty"))
    return rows


def best_tau_claim(alignment: pd.DataFrame, taus) -> dict:
    """tau = 0.5 aligns best: share of (model, data set, human set) cells where 0.5 has the top rho."""
    neurons = alignment[(alignment["source_type"] == "neurons") & alignment["measure"].map(lambda m: jaccard_tau(m) is not None)
                        & ~alignment["model"].str.contains("@")]
    cells = neurons.groupby(["model", "dataset", "pairs"])
    best = cells.apply(lambda g: g.loc[g["rho"].idxmax(), "measure"] if g["rho"].notna().any() else None,
                       include_groups=False).dropna()
    share = float((best == headline_measure(taus)).mean()) if len(best) else np.nan
    return claim_row(f"tau = {min(taus):g} aligns best among {list(taus)}",
                     "fraction of (model, data set, human set) where it has the highest rho", share,
                     n=len(best), verdict="untestable" if not len(best) else ("supported" if share > 0.5 else "not supported"),
                     note="point estimates; see the alignment table for CIs")


def baseline_claims(neuron_sims: dict, baseline_sims: dict, pairs: dict, measure: str, n_boot: int, seed: int) -> list[dict]:
    """Neurons align better than each baseline: paired bootstrap of rho(neurons) - rho(baseline).

    neuron_sims: (model, dataset) -> similarity table; baseline_sims: (name, model, dataset) -> table
    (model or dataset "" when the baseline does not depend on it); pairs: human set -> table.
    Compared on the pairs both cover.
    """
    rows = []
    for (model, dataset), nsim in neuron_sims.items():
        n = nsim[nsim["measure"] == measure]
        for (name, bmodel, bdataset), bsim in baseline_sims.items():
            if (bmodel and bmodel != model) or (bdataset and bdataset != dataset):
                continue
            for pname, human in pairs.items():
                joined = covered_pairs(n, human).merge(bsim[["concept_a", "concept_b", "value"]],
                                                       on=["concept_a", "concept_b"], suffixes=("", "_base"))
                d = spearman_diff_bootstrap(joined["value"], joined["value_base"], joined["human"], n_boot=n_boot, seed=seed)
                rows.append(claim_row(f"neurons ({measure}) align better than {name}",
                                      f"rho difference, {model} / {dataset} vs {pname} (paired bootstrap)",
                                      d["diff"], d["ci_low"], d["ci_high"], d["p"], d["n"]))
    return rows


def count_claim(counts: pd.DataFrame) -> dict:
    """Expert counts fall roughly logarithmically with tau: R^2 of log(count+1) ~ tau vs count ~ tau."""
    med = counts.groupby("tau")["n_experts"].median()
    tau, c = med.index.to_numpy(), med.to_numpy(dtype=float)
    if len(tau) < 3 or np.ptp(c) == 0:
        why = f"only {len(tau)} tau values (a fit needs 3)" if len(tau) < 3 else "the expert count is the same at every tau"
        return claim_row("expert counts fall roughly logarithmically with tau", "R^2 of log fit", n=len(tau),
                         verdict="untestable", note=why)
    r2 = lambda y: float(np.corrcoef(tau, y)[0, 1] ** 2)  # noqa: E731 (one use)
    r2_log, r2_lin = r2(np.log1p(c)), r2(c)
    return claim_row("expert counts fall roughly logarithmically with tau",
                     "R^2 of log(1+median count) ~ tau (vs R^2 of the linear fit)", r2_log, n=len(tau),
                     verdict="supported" if r2_log > r2_lin and c[0] > c[-1] else "not supported",
                     note=f"linear-fit R^2 {r2_lin:.3f}; median over concepts and runs")


def stability_claims(stability: pd.DataFrame, measure: str) -> list[dict]:
    s = stability[stability["measure"] == measure]
    return [claim_row(f"ExpertLens similarities are stable {r.kind.replace('_', ' ')}",
                      f"Spearman rho, {r.a} vs {r.b} ({r.fixed})", r.rho, r.ci_low, r.ci_high, r.p, r.n)
            for r in s.itertuples()]


def trend_claim(claim: str, x: pd.Series, rho: pd.Series, what: str) -> dict:
    """A monotone trend (alignment vs training step or model size): Spearman over the points."""
    from scipy.stats import spearmanr

    ok = rho.notna() & x.notna()
    if ok.sum() < 3:
        return claim_row(claim, f"Spearman(alignment, {what})", n=int(ok.sum()), verdict="untestable",
                         note="fewer than 3 points in this run")
    r, p = spearmanr(x[ok], rho[ok])
    if np.isnan(r):  # one side constant (e.g. every model of one size): no trend can be measured
        return claim_row(claim, f"Spearman(alignment, {what})", n=int(ok.sum()), verdict="untestable",
                         note=f"Spearman undefined: {what} or alignment is the same at every point")
    return claim_row(claim, f"Spearman(alignment, {what})", float(r), p=float(p), n=int(ok.sum()),
                     verdict="supported" if r > 0 and p < 0.05 else "not supported", note="no CI at this n; p from scipy")


def causal_claims(summary: pd.DataFrame, model: str, measure: str = "logp") -> list[dict]:
    """Forcing the top-k experts raises the concept word's probability more than forcing k random units."""
    rows = []
    s = summary[(summary["measure"] == measure) & (summary["condition"] == "experts-random")]
    for r in s.itertuples():
        rows.append(claim_row("forcing experts raises P(concept word) more than forcing random units",
                              f"{model}, '{r.concept}': mean paired difference of {measure}, experts - random "
                              f"(k={r.k}, t CI, Wilcoxon p)", r.mean, r.ci_low, r.ci_high, r.p_value, r.n_prompts))
    return rows


def domain_claims(domains: pd.DataFrame) -> list[dict]:
    """Clusters of concepts on Jaccard match human domain labels (adjusted Rand index > chance)."""
    rows = []
    for r in domains.itertuples():
        untestable = np.isnan(r.ari)
        labels = getattr(r, "categories", "") or "category"  # the label source (expertlens.categories)
        covered = f", {r.n_labelled} of {r.n_concepts} concepts labelled" if hasattr(r, "n_concepts") else ""
        rows.append(claim_row("concepts cluster into human-like domains",
                              f"adjusted Rand index vs {labels} labels, {r.model} / {r.dataset} (permutation p{covered})",
                              r.ari, p=r.p_permutation, n=r.n_labelled,
                              verdict="untestable" if untestable else ("supported" if r.p_permutation < 0.05 else "not supported"),
                              note=r.note or ""))
    return rows
