"""Detection scoring of feature explanations against a random-explanation control (issue 16 item 6).

For each explained feature the scorer LLM sees the explanation and one held-out context at a time
(lensflow.lfp.validation.contexts: as many activating as non-activating, shuffled) and answers yes
or no: does the feature fire there? The same contexts are then asked with a control explanation,
another feature's explanation from the same run drawn with the seed. Every answer goes through the
caller's client (cached on disk like the explainer's).

Scoring. A parsed answer is right or wrong (1 / 0). An answer that cannot be parsed as yes or no
scores 0.5, the expected score of a guess, and is counted (n_unparsed), never dropped. Per feature:
balanced accuracy (the mean of the activating and non-activating accuracies; equal to plain
accuracy here, since the classes are balanced) with a Wilson 95% interval over its contexts, the
same for the control, and explanation - control with a paired bootstrap CI over contexts. A feature
**beats its control** when a one-sided exact sign test on the paired contexts (explanation scored
higher vs control scored higher; ties dropped) gives p < alpha: with a handful of contexts a
bootstrap interval is too coarse to decide on. Per run: means over features with bootstrap CIs
over features, the count that beat their control, and the pooled accuracy with a Wilson interval.

A scorer that gives log-probabilities (the local client) also yields a threshold-free score: the AUC
of log p(yes) - log p(no) between activating and non-activating contexts (auc, control_auc). A small
scorer that answers "no" to everything has accuracy exactly 0.5 while its margins may still rank
the contexts; this is reported next to the accuracy, and beats_control rests on the answers alone.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
from scipy import stats

from lensflow.core.claims import claim_row
from lensflow.core.stats import bootstrap_mean

log = logging.getLogger("lensflow")
OPTIONS = ["yes", "no"]
DETECT_SYSTEM = (  # short: a local scorer reads it once per context
    "You judge features of a language model. Given what a feature looks for and a text whose last token "
    "is marked «like this», say whether the feature fires on the marked token. Answer yes or no."
)
YES_NO = {"yes": "yes", "y": "yes", "true": "yes", "no": "no", "n": "no", "false": "no"}


def detection_messages(explanation: str, context: str) -> list[dict]:
    return [{"role": "system", "content": DETECT_SYSTEM},
            {"role": "user", "content": f"The feature finds {explanation}\nText: {context}\nDoes it fire on the "
                                        "marked token? Answer yes or no."}]


def parse_yes_no(text: str) -> str | None:
    """"yes" / "no" from a free-text answer; None when it says neither or both.

    A leading yes/no/true/false (after punctuation or markdown) decides; else the answer must
    contain exactly one of the whole words yes and no ("I cannot say yes or no" is unparseable).
    """
    t = " ".join(str(text).lower().split())
    m = re.match(r"^[\W_]*(yes|no|true|false|y|n)\b", t)
    if m:
        return YES_NO[m.group(1)]
    found = {w for w in OPTIONS if re.search(rf"\b{w}\b", t)}
    return found.pop() if len(found) == 1 else None


def ask(client, messages: list[dict]) -> tuple[str | None, str, float]:
    """(yes / no / None, raw answer, log p(yes) - log p(no) or NaN). A local client decides by option
    log-probability (its choose_with_raw, same cache entry); any other client's text is parsed with
    parse_yes_no and has no margin."""
    if hasattr(client, "option_logprobs"):
        choice, raw = client.choose_with_raw(messages, OPTIONS)
        lp = client.option_logprobs(messages, OPTIONS)
        return choice, raw, float(lp["yes"] - lp["no"])
    if hasattr(client, "complete"):
        text = client.complete(messages)
        return parse_yes_no(text), text, np.nan
    choice = client.choose(messages, OPTIONS)
    return (choice if choice in OPTIONS else None), str(choice), np.nan


def auc(activating: np.ndarray, margin: np.ndarray) -> float:
    """P(margin of an activating context > that of a non-activating one), ties half: the
    threshold-free detection score of a scorer that gives log-probabilities; NaN without them."""
    if not np.isfinite(margin).all() or activating.all() or not activating.any():
        return np.nan
    ranks = stats.rankdata(margin)
    n1, n0 = int(activating.sum()), int((~activating).sum())
    return float((ranks[activating].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def draw_controls(explanations: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per feature (layer, feature), a control: another feature's explanation with different text.

    Drawn with np.random.default_rng(seed) in (layer, feature) order from the run's non-empty
    explanations; control_explanation is "" where no other explanation exists.
    """
    ex = explanations.sort_values(["layer", "feature"]).reset_index(drop=True)
    text = ex["explanation"].fillna("").astype(str)
    rng = np.random.default_rng(seed)
    rows = []
    for i, r in ex.iterrows():
        pool = np.flatnonzero((text != "").to_numpy() & (text != text[i]).to_numpy())
        j = int(rng.choice(pool)) if len(pool) else None
        rows.append({"layer": int(r["layer"]), "feature": int(r["feature"]),
                     "control_layer": -1 if j is None else int(ex.loc[j, "layer"]),
                     "control_feature": -1 if j is None else int(ex.loc[j, "feature"]),
                     "control_explanation": "" if j is None else text[j]})
    return pd.DataFrame(rows, columns=["layer", "feature", "control_layer", "control_feature", "control_explanation"])


def run_detection(client, explanations: pd.DataFrame, contexts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Ask every context of every explained feature under both conditions.

    explanations: layer, feature, explanation. contexts: layer, feature, context, activating, text
    (plus whatever else, kept). Returns one row per (context, condition): the context's columns,
    condition ("explanation" | "control"), answer ("yes" / "no" / "" unparseable), raw, score.
    """
    controls = draw_controls(explanations, seed)
    merged = explanations[["layer", "feature", "explanation"]].merge(controls, on=["layer", "feature"])
    rows = []
    for r in merged.itertuples(index=False):
        mine = contexts[(contexts["layer"] == r.layer) & (contexts["feature"] == r.feature)]
        for condition, text in (("explanation", r.explanation), ("control", r.control_explanation)):
            if not isinstance(text, str) or not text:
                continue
            for c in mine.to_dict("records"):
                answer, raw, margin = ask(client, detection_messages(text, c["text"]))
                score = 0.5 if answer is None else float((answer == "yes") == bool(c["activating"]))
                rows.append({**c, "condition": condition, "control_layer": r.control_layer,
                             "control_feature": r.control_feature, "answer": answer or "", "raw": str(raw)[:200],
                             "score": score, "margin": margin})
    out = pd.DataFrame(rows)
    if len(out):
        n_bad = int((out["answer"] == "").sum())
        if n_bad:
            log.warning("%d of %d detection answers unparseable (scored 0.5)", n_bad, len(out))
    return out


def wilson(successes: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (successes may be fractional: half-scored answers)."""
    if n <= 0:
        return np.nan, np.nan
    z = stats.norm.ppf((1 + ci) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


EMPTY_SCORE = {"layer": -1, "feature": -1, "n_contexts": 0, "n_activating": 0, "accuracy": np.nan,
               "accuracy_ci_low": np.nan, "accuracy_ci_high": np.nan, "control_accuracy": np.nan,
               "control_ci_low": np.nan, "control_ci_high": np.nan, "diff": np.nan, "diff_ci_low": np.nan,
               "diff_ci_high": np.nan, "n_better": 0, "n_worse": 0, "p_control": np.nan, "beats_control": False,
               "n_unparsed": 0, "n_unparsed_control": 0, "control_layer": -1, "control_feature": -1,
               "auc": np.nan, "control_auc": np.nan, "quantiles": "", "reason": ""}
SCORE_COLUMNS = list(EMPTY_SCORE)


def _balanced(g: pd.DataFrame) -> float:
    return float(np.mean([g.loc[g["activating"] == a, "score"].mean() for a in (True, False)]))


def feature_scores(answers: pd.DataFrame, explanations: pd.DataFrame, alpha: float = 0.05, n_boot: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """One row per explained feature (layer, feature): accuracy and control with CIs, the paired
    difference, the sign test and beats_control; `reason` says why a feature is unscored."""
    rows = []
    for r in explanations.sort_values(["layer", "feature"]).itertuples(index=False):
        g = answers[(answers["layer"] == r.layer) & (answers["feature"] == r.feature)] if len(answers) else answers
        row = {**EMPTY_SCORE, "layer": int(r.layer), "feature": int(r.feature)}
        e = g[g["condition"] == "explanation"] if len(g) else g
        c = g[g["condition"] == "control"] if len(g) else g
        if not isinstance(r.explanation, str) or not r.explanation:
            row["reason"] = "no explanation"
        elif len(e) == 0:
            row["reason"] = "no held-out activating and non-activating contexts"
        else:
            e = e.sort_values("context")
            n = len(e)
            acc = _balanced(e)
            row |= {"n_contexts": n, "n_activating": int(e["activating"].sum()), "accuracy": acc,
                    "auc": auc(e["activating"].to_numpy(bool), e["margin"].to_numpy(float)),
                    "n_unparsed": int((e["answer"] == "").sum()),
                    "quantiles": ",".join(f"{q:.2f}" for q in sorted(e.loc[e["activating"], "quantile"]))}
            row["accuracy_ci_low"], row["accuracy_ci_high"] = wilson(acc * n, n)
            if len(c) == 0:
                row["reason"] = "no other explanation to serve as control"
            else:
                c = c.sort_values("context")
                cacc = _balanced(c)
                d = e["score"].to_numpy() - c["score"].to_numpy()  # [n] paired by context
                better, worse = int((d > 0).sum()), int((d < 0).sum())
                boot = bootstrap_mean(d, n_boot=n_boot, seed=seed)
                p = float(stats.binomtest(better, better + worse, 0.5, alternative="greater").pvalue) \
                    if better + worse else 1.0
                row |= {"control_accuracy": cacc, "diff": acc - cacc, "diff_ci_low": boot.ci_low,
                        "control_auc": auc(c["activating"].to_numpy(bool), c["margin"].to_numpy(float)),
                        "diff_ci_high": boot.ci_high, "n_better": better, "n_worse": worse, "p_control": p,
                        "beats_control": bool(p < alpha), "n_unparsed_control": int((c["answer"] == "").sum()),
                        "control_layer": int(c["control_layer"].iloc[0]),
                        "control_feature": int(c["control_feature"].iloc[0])}
                row["control_ci_low"], row["control_ci_high"] = wilson(cacc * n, n)
        rows.append(row)
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def run_summary(scores: pd.DataFrame, explanations: pd.DataFrame | None = None, n_boot: int = 1000,
                seed: int = 0) -> dict:
    """One run's detection summary: means over scored features with bootstrap CIs, counts, the
    pooled accuracy with a Wilson interval; with the explanations (their `related` labels) also how
    many features the explainer labelled related and how many of those are kept (beat their control)."""
    s = scores[scores["n_contexts"] > 0]
    out = {"n_features": len(scores), "n_scored": len(s), "n_controlled": int(s["control_accuracy"].notna().sum()),
           "n_beats_control": int(scores["beats_control"].sum()), "n_contexts": int(s["n_contexts"].sum()),
           "n_unparsed": int(s["n_unparsed"].sum() + s["n_unparsed_control"].sum())}
    for col, name in (("accuracy", "accuracy"), ("control_accuracy", "control"), ("diff", "diff"), ("auc", "auc"),
                      ("control_auc", "control_auc")):
        m = bootstrap_mean(s[col].dropna().to_numpy(), n_boot=n_boot, seed=seed)
        out |= {name: m.mean, f"{name}_ci_low": m.ci_low, f"{name}_ci_high": m.ci_high}
    pooled = float((s["accuracy"] * s["n_contexts"]).sum())
    out["pooled_accuracy"] = pooled / out["n_contexts"] if out["n_contexts"] else np.nan
    out["pooled_ci_low"], out["pooled_ci_high"] = wilson(pooled, out["n_contexts"])
    if explanations is not None:
        r = restrict_related(explanations, scores)
        out |= {"n_related_labelled": int(r["related_labelled"].sum()), "n_related_kept": int(r["related"].sum())}
    return out


def restrict_related(explanations: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The explanations with `related` kept only where the explanation beats its control; the
    explainer's own label moves to `related_labelled`. Unlabelled (NA) counts as not related."""
    keep = scores[["layer", "feature", "beats_control"]]
    out = explanations.drop(columns=["beats_control"], errors="ignore").merge(keep, on=["layer", "feature"],
                                                                              how="left")
    out["related_labelled"] = out["related"].fillna(False).astype(bool)
    out["related"] = out["related_labelled"] & out["beats_control"].fillna(False).astype(bool)
    return out


def related_note(explanations: pd.DataFrame, scores: pd.DataFrame) -> str:
    """Why Tables 6/7 have the related features they have, with the detection numbers (means over
    the scored features; their CIs are in the detection table)."""
    r = restrict_related(explanations, scores)
    s = scores[scores["n_contexts"] > 0]
    p_min = s["p_control"].min() if s["p_control"].notna().any() else np.nan
    nums = (f"mean detection accuracy {s['accuracy'].mean():.2f} vs {s['control_accuracy'].mean():.2f} with a random "
            f"explanation; {int(scores['beats_control'].sum())} of {len(s)} scored explanations beat their control "
            f"(one-sided sign test, smallest p {p_min:.3f})")
    if int(r["related"].sum()) == 0:
        return (f"no related feature: {int(r['related_labelled'].sum())} labelled related by the explainer, none "
                f"with an explanation that beats its control; {nums}")
    return f"{int(r['related'].sum())} of {int(r['related_labelled'].sum())} labelled related kept; {nums}"


def detection_claims(summary: pd.DataFrame) -> list[dict]:
    """Controls, not paper claims: explanations predict their feature on held-out contexts above
    chance (accuracy CI above 0.5) and above a random explanation (difference CI above 0)."""
    rows = []
    for r in summary.itertuples(index=False):
        run = f"{r.model} / {r.task}"
        note = (f"{r.n_scored} features scored, {r.n_beats_control} beat their control (sign test); "
                f"{r.n_unparsed} of {2 * r.n_contexts} answers unparseable")
        low = r.accuracy_ci_low
        verdict = "untestable" if np.isnan(low) else ("supported" if low > 0.5 else "not supported")
        rows.append(claim_row("Explanations let a model detect their feature on held-out contexts (detection "
                              "scoring; a control, not in the paper)", f"mean balanced accuracy over features, {run}",
                              r.accuracy, low, r.accuracy_ci_high, n=r.n_scored,
                              verdict=verdict, note=f"chance 0.5; {note}"))
        rows.append(claim_row("Explanations beat a random explanation at detection (control, not in the paper)",
                              f"accuracy - random-explanation accuracy, {run}", r.diff, r.diff_ci_low, r.diff_ci_high,
                              n=r.n_controlled, note=note if not np.isnan(r.diff_ci_low) else ""))
    return rows
