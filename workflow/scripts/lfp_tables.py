"""The LFP paper's tables over every tuned model: probes (Tables 3-5, 10), sampled words (Tables 2/9),
feature explanations (Tables 1/8) with their detection scores, the per-run detection summary,
activity (Table 7), ablation (Table 6) and the claims table.

Snakemake rule `lfp_tables`: input.measures, input.words, input.explanations, input.detection,
input.activity, input.ablation (one per run, in params.runs order), input.overlap and input.sparsity (CSV), input.controls (base-model
controls, lensflow.lfp.probes.base_control), input.dpo_evals (lfp_dpo_eval summaries of params.dpo_runs, in
that order: the DPO training check); params: runs, dpo_runs, n_boot, detection_n_boot, sae_target, seed
-> output.<name>_csv / <name>_md for each table.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.tables import write_csv_md
from lensflow.lfp.claims import (
    ablation_claims,
    activity_claims,
    control_claims,
    dpo_eval_claims,
    overlap_claims,
    probe_claims,
    sparsity_claims,
)
from lensflow.lfp.validation.ablation import ablation_table
from lensflow.lfp.validation.detection import detection_claims, restrict_related, run_summary

TITLES = {"probes": "LFP probes (Tables 3, 4, 5, 10; base-model control)", "words": "Predicted vs lexicon value, sampled words (Tables 2/9)",
          "explanations": "Feature explanations (Tables 1/8) and their detection scores",
          "detection": "Detection scoring of the explanations vs a random-explanation control",
          "activity": "Related-feature activity (Table 7)",
          "ablation": "Zero-ablation of related features (Table 6)", "claims": "LFP claims"}


def n_zeroed(path) -> int:
    """How many related features the ablation zeroed (from its metadata)."""
    return sum(len(v) for v in io.read_metadata(path).get("zeroed", {}).get("related", {}).values())


def scored_explanations(runs, explanations, detection, n_boot, seed):
    """(explanations with their detection scores and the restricted `related`, per-run summary)."""
    tables, summary = [], []
    for r, fe, fd in zip(runs, explanations, detection):
        ex, sc = io.read_table(fe), io.read_table(fd)
        merged = restrict_related(ex, sc).merge(sc.drop(columns=["beats_control"]), on=["layer", "feature"], how="left")
        tables.append(merged.assign(**r))
        summary.append({**r, **run_summary(sc, ex, n_boot=n_boot, seed=seed)})
    return pd.concat(tables, ignore_index=True), pd.DataFrame(summary)


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    runs = [dict(model=m, task=t) for m, t in p.runs]
    measures = pd.concat([io.read_table(f) for f in sm.input.measures], ignore_index=True)
    controls = [io.read_table(f) for f in sm.input.controls]
    controls = pd.concat(controls, ignore_index=True) if controls else measures.iloc[:0]
    words = []
    for run, f in zip(runs, sm.input.words):
        w, sampled = io.read_table(f), io.read_metadata(f).get("sampled_words", [])
        words.append(w[w["word"].isin(sampled)].assign(**run))
    explanations, detection = scored_explanations(runs, sm.input.explanations, sm.input.detection,
                                                  p.detection_n_boot, p.seed)
    tables = {
        "probes": pd.concat([measures, controls], ignore_index=True),
        "words": pd.concat(words, ignore_index=True),
        "explanations": explanations,
        "detection": detection,
        "activity": pd.concat([io.read_table(f) for f in sm.input.activity], ignore_index=True),
        "ablation": pd.concat([ablation_table(io.read_table(f), n_boot=p.n_boot, seed=p.seed).assign(
                               **r, n_zeroed=n_zeroed(f), related_note=io.read_metadata(f).get("related_note", ""))
                               for r, f in zip(runs, sm.input.ablation)], ignore_index=True),
    }
    overlap = pd.read_csv(sm.input.overlap)
    dpo = [io.read_table(f).assign(model=m, task=t) for (m, t), f in zip(p.dpo_runs, sm.input.dpo_evals)]
    claims = (probe_claims(measures) + overlap_claims(overlap) + activity_claims(tables["activity"])
              + ablation_claims(tables["ablation"]) + detection_claims(detection) + control_claims(controls)
              + dpo_eval_claims(pd.concat(dpo, ignore_index=True) if dpo else pd.DataFrame(columns=["model", "task"]))
              + sparsity_claims(pd.read_csv(sm.input.sparsity),
                                p.sae_target["fvu"], p.sae_target["l0_fraction"]))
    tables["claims"] = pd.DataFrame(claims)
    for name, df in tables.items():
        write_csv_md(df, sm.output[f"{name}_csv"], sm.output[f"{name}_md"], TITLES[name])
    log.info("claims: %s", tables["claims"]["verdict"].value_counts().to_dict() if len(claims) else "none")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
