"""The LFP paper's claims against this run's measurements (verdicts as in lensflow.core.claims).

Each claim names the statistic, its CI or p-value and a mechanical verdict decided before looking
at the numbers: a p-value below 0.05 in the claimed direction, or a CI that excludes the null.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensflow.core.claims import claim_row

from .sae.sparsity import worse_fvu

ALPHA = 0.05


def _p_verdict(value, p, positive=True) -> str:
    if np.isnan(p) or np.isnan(value):
        return "untestable"
    return "supported" if p < ALPHA and (value > 0) == positive else "not supported"


def _ci_verdict(low, high, above=0.0) -> str:
    if np.isnan(low):
        return "untestable"
    return "supported" if low > above else "not supported"


def probe_claims(measures: pd.DataFrame) -> list[dict]:
    """Tables 3-5 and 10: the probes recover the feedback (per model/task)."""
    rows = []
    for (model, task), g in measures.groupby(["model", "task"], sort=False):
        m = g.set_index("measure")
        run = f"{model} / {task}"
        if "kendall_tau" in m.index:
            k, b = m.loc["kendall_tau"], m.loc["kendall_tau_xavier_baseline"]
            rows.append(claim_row("The probe's per-word predictions correlate with the VADER lexicon (Table 4)",
                                  f"Kendall tau per word, {run}", k.value, p=k.p, n=k.n,
                                  verdict=_p_verdict(k.value, k.p)))
            rows.append(claim_row("An untrained (Xavier) probe does not correlate (Table 4 baseline)",
                                  f"Kendall tau per word, Xavier baseline, {run}", b.value, p=b.p, n=b.n,
                                  verdict="untestable" if np.isnan(b.p) else
                                  ("supported" if b.p >= ALPHA else "not supported")))
            neg = m.loc["kendall_tau_negative"]
            rows.append(claim_row("The probe also ranks negative words (Table 10)", f"Kendall tau, negative words, {run}",
                                  neg.value, p=neg.p, n=neg.n, verdict=_p_verdict(neg.value, neg.p)))
            for pol in ("positive", "negative"):
                s = m.loc[f"sign_accuracy_{pol}"]
                rows.append(claim_row(f"The probe gets the sign of {pol} words right more often than chance (Table 5)",
                                      f"sign accuracy, {pol} words, {run}", s.value, s.ci_low, s.ci_high, n=s.n,
                                      verdict=_ci_verdict(s.ci_low, s.ci_high, 0.5)))
        if "logistic_accuracy" in m.index:
            a, base = m.loc["logistic_accuracy"], m.loc["majority_baseline"]
            rows.append(claim_row("A logistic probe separates positive from negative inputs (Table 3)",
                                  f"held-out accuracy, {run}", a.value, a.ci_low, a.ci_high, n=a.n,
                                  verdict=_ci_verdict(a.ci_low, a.ci_high, max(0.5, base.value)),
                                  note=f"majority-class baseline {base.value:.3f}"))
    return rows


def overlap_claims(overlap: pd.DataFrame) -> list[dict]:
    """§3.4: AE_n and AE_2n learn shared features (MMCS above random dictionaries), per model/task.

    With per-layer bootstrap CIs (mmcs_ci_low/high): supported when every layer's CI lies above the
    random-dictionary level; the interval is then the lowest and highest CI ends minus that level.
    Without them: the range over layers."""
    rows = []
    for (model, task), g in overlap.groupby(["model", "task"], sort=False):
        diff = g["mmcs"] - g["mmcs_random"]
        if "mmcs_ci_low" in g:
            low = float((g["mmcs_ci_low"] - g["mmcs_random"]).min())
            high = float((g["mmcs_ci_high"] - g["mmcs_random"]).max())
            note = "interval = per-layer bootstrap 95% CIs over features, lowest and highest ends"
        else:
            low, high, note = float(diff.min()), float(diff.max()), "interval = range over layers"
        rows.append(claim_row("AE_n and AE_2n share features (matched cosine above chance)",
                              f"MMCS - random-dictionary MMCS, {model} / {task}, over layers", float(diff.mean()),
                              low, high, n=len(g), verdict="supported" if low > 0 else "not supported", note=note))
    return rows


def sparsity_claims(check: pd.DataFrame, fvu_max: float, l0_fraction_max: float) -> list[dict]:
    """Not a claim of the paper but the premise of its feature analysis: AE_n converged to a sparse
    code on every layer (lensflow.lfp.sae.sparsity.sparsity_check rows). A count over layers, not a
    sample statistic, so no interval: "supported" when every layer meets the target. Where the run
    trained the L1 sweep, the note says whether any alpha of it gets there, and how close it comes."""
    rows = []
    target = f"held-out FVU and per-dimension FVU <= {fvu_max:g} with mean L0 <= {l0_fraction_max:.0%} of the dictionary"
    for (model, task), g in check.groupby(["model", "task"], sort=False):
        worst = g.loc[worse_fvu(g).idxmax()]
        note = (f"AE_n at alpha {worst['alpha']:g}, worst layer {worst['layer']}: FVU {worst['fvu']:.3f}, per-dim "
                f"{worst['fvu_per_dim']:.3f}, L0 {worst['l0_fraction']:.1%}")
        swept = g[g["sweep_alphas"].astype(object).fillna("").astype(str) != ""]  # "" reads back from CSV as NaN
        if len(swept):
            sparse = swept.dropna(subset=["sparse_best_fvu"])
            note += (f"; L1 sweep (alphas {swept['sweep_alphas'].iloc[0]}): target reached on "
                     f"{int((swept['reachable_in_sweep'] == True).sum())} of {len(swept)} layers")  # noqa: E712 (object column)
            if len(sparse):  # the sweep's frontier: per layer, the best of the sparse-enough alphas
                worse = worse_fvu(sparse, "sparse_best_fvu")
                lo, hi = (worse.agg(f) for f in ("idxmin", "idxmax"))  # row labels
                note += (f"; at L0 <= {l0_fraction_max:.0%} its best per layer (the worse of FVU and per-dim FVU) runs "
                         f"from {worse[lo]:.3f} (layer {sparse.at[lo, 'layer']}, alpha {sparse.at[lo, 'sparse_best_alpha']:g}) "
                         f"to {worse[hi]:.3f} (layer {sparse.at[hi, 'layer']}, alpha {sparse.at[hi, 'sparse_best_alpha']:g})")
            if len(sparse) < len(swept):
                note += f"; no alpha sparse enough on {len(swept) - len(sparse)} layer(s)"
        else:
            note += "; no L1 sweep in this run"
        linear = g.dropna(subset=["linear_fvu"]) if "linear_fvu" in g else g.iloc[:0]
        if len(linear):  # the best linear code of the target's size, which the tied SAE can hold exactly
            lin_worse = worse_fvu(linear, "linear_fvu")
            note += (f"; the best linear code at L0 {int(linear['linear_k'].iloc[0])} (top principal subspace, which "
                     f"this SAE can hold exactly) meets it on {int((linear['linear_meets_target'] == True).sum())} of "  # noqa: E712
                     f"{len(linear)} layers (worse of FVU and per-dim FVU {lin_worse.min():.3f}-{lin_worse.max():.3f})")
        met = int(g["meets_target"].sum())
        rows.append(claim_row(f"SAE training check (not in the paper): AE_n reaches {target} on every layer",
                              f"layers meeting the target, {model} / {task}", met, n=len(g),
                              verdict="supported" if met == len(g) else "not supported", note=note))
    return rows


def activity_claims(activity: pd.DataFrame) -> list[dict]:
    """Table 7: related features are more active than the average feature when the probe predicts high."""
    rows = []
    for r in activity.itertuples():
        rows.append(claim_row("Task-related features fire more than the average feature on high-prediction inputs "
                              "(Table 7)", f"related - average activation rate, {r.model} / {r.task}",
                              r.diff_high, r.diff_high_ci_low, r.diff_high_ci_high, n=r.n_high,
                              note=r.reason if isinstance(r.reason, str) and r.reason else f"{r.n_related} related features"))
    return rows


def ablation_claims(ablation: pd.DataFrame) -> list[dict]:
    """Table 6: zeroing the related features lowers the task reward (vs the plain reconstruction),
    and more than zeroing random features of the same number."""
    rows = []
    for (model, task), g in ablation.groupby(["model", "task"], sort=False):
        t = g.set_index("condition")
        if "related" not in t.index:
            continue
        r = t.loc["related"]
        # No related feature to zero (none labelled, or none whose explanation beats its detection
        # control): the comparison says nothing.
        none_zeroed = "n_zeroed" in t.columns and r.n_zeroed == 0
        why = r.get("related_note", "") if isinstance(r.get("related_note", ""), str) else ""  # detection numbers
        note = f"{why or 'no feature was labelled related'}, so nothing was zeroed" if none_zeroed else ""
        rows.append(claim_row("Zero-ablating task-related features lowers the task reward (Table 6)",
                              f"reward(related zeroed) - reward(SAE), {model} / {task}", r.diff_vs_sae,
                              r.diff_ci_low, r.diff_ci_high, n=r.n,
                              verdict="untestable" if none_zeroed or np.isnan(r.diff_ci_high) else
                              ("supported" if r.diff_ci_high < 0 else "not supported"), note=note))
        if "random" in t.index:
            rnd = t.loc["random"]
            rows.append(claim_row("Random features of the same number matter less (Table 6 control)",
                                  f"reward(random zeroed) - reward(SAE), {model} / {task}", rnd.diff_vs_sae,
                                  rnd.diff_ci_low, rnd.diff_ci_high, n=rnd.n,
                                  verdict="untestable" if none_zeroed or np.isnan(rnd.diff_ci_low) else
                                  ("supported" if rnd.diff_ci_low > r.diff_vs_sae else "not supported"),
                                  note=note or "supported = random's CI lies above the related-feature effect"))
    return rows


def control_claims(controls: pd.DataFrame) -> list[dict]:
    """Not a claim of the paper but the premise of its interpretation: the probe reads a pattern the
    model LEARNED in fine-tuning, so it does better on the tuned model than on the base model
    (lensflow.lfp.probes.base_control). Supported when the paired bootstrap CI of tuned - base is above 0."""
    rows = []
    for (model, task), g in controls.groupby(["model", "task"], sort=False):
        m = g.set_index("measure")
        for stat, what in (("kendall_tau", "Kendall tau per word"), ("logistic_accuracy", "held-out accuracy")):
            if f"{stat}_tuned_minus_base" not in m.index:
                continue
            d, base = m.loc[f"{stat}_tuned_minus_base"], m.loc[f"{stat}_base_model"]
            rows.append(claim_row("The probe reads a pattern learned in fine-tuning: it beats the same probe on "
                                  "the base model (control, not in the paper)",
                                  f"{what}, tuned - base model, {model} / {task}", d.value, d.ci_low, d.ci_high,
                                  p=d.p, n=d.n, verdict=_ci_verdict(d.ci_low, d.ci_high, 0.0),
                                  note=f"base model: {base.value:.3f} [{base.ci_low:.3f}, {base.ci_high:.3f}]"))
    return rows


def dpo_eval_claims(summaries: pd.DataFrame) -> list[dict]:
    """Not a claim of the paper but the premise of its DPO tasks: training worked, judged on preference
    pairs held out of it (lensflow.lfp.finetune.dpo_eval; summaries: its tables with model and task).
    Three checks per run, each decided by its bootstrap CI: the tuned policy's implicit reward margin
    is above 0, its implicit-reward accuracy above chance (0.5), and it prefers the chosen answer by
    log-likelihood more often than the base policy does (tuned - base above 0)."""
    rows = []
    check = "DPO training check on held-out pairs (not in the paper): "
    for (model, task), g in summaries.groupby(["model", "task"], sort=False):
        s, run = g.set_index(["measure", "policy"]), f"{model} / {task}"
        m, a = s.loc[("implicit_margin", "tuned")], s.loc[("implicit_accuracy", "tuned")]
        d, b = s.loc[("loglik_accuracy", "tuned - base")], s.loc[("loglik_accuracy", "base")]
        rows.append(claim_row(check + "the tuned policy's implicit reward margin is above 0",
                              f"mean implicit reward margin, held-out pairs, {run}", m.value, m.ci_low, m.ci_high,
                              n=m.n, verdict=_ci_verdict(m.ci_low, m.ci_high, 0.0), note="base policy: 0 by definition"))
        rows.append(claim_row(check + "the implicit reward ranks chosen over rejected more often than chance",
                              f"implicit reward accuracy (margin > 0), held-out pairs, {run}", a.value, a.ci_low,
                              a.ci_high, n=a.n, verdict=_ci_verdict(a.ci_low, a.ci_high, 0.5)))
        rows.append(claim_row(check + "the tuned policy prefers the chosen answer more often than the base",
                              f"log-likelihood preference accuracy, tuned - base, held-out pairs, {run}", d.value,
                              d.ci_low, d.ci_high, n=d.n, verdict=_ci_verdict(d.ci_low, d.ci_high, 0.0),
                              note=f"base policy: {b.value:.3f} [{b.ci_low:.3f}, {b.ci_high:.3f}]"))
    return rows


def early_late(values: pd.Series, frac: float = 0.25, seed: int = 0) -> dict:
    """Mean of the last `frac` of steps minus the first `frac`, with a bootstrap CI and Welch p."""
    from lensflow.core.stats import bootstrap_mean_diff

    v = values.dropna().to_numpy(dtype=float)
    k = max(2, int(round(len(v) * frac)))
    if len(v) < 2 * k:  # fewer than two steps a side: no interval, so no verdict either
        return {"early": np.nan, "late": np.nan, "diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "k": k}
    d = bootstrap_mean_diff(v[-k:], v[:k], seed=seed)
    return {"early": float(v[:k].mean()), "late": float(v[-k:].mean()), "diff": d.diff, "ci_low": d.ci_low,
            "ci_high": d.ci_high, "p": d.p, "k": k}
