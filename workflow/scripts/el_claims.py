"""The ExpertLens claims table: each claim, the statistic measured here with its CI or p, a verdict.

Snakemake rule `el_claims`: input.alignment, input.stability, input.similarities (labels as in
el_alignment), input.pairs, input.counts, input.causal (per model), input.domains; params: labels,
pairs, taus, measure, models, n_boot, seed -> output.csv, output.md.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.tables import write_csv_md
from lensflow.expertlens import claims
from lensflow.expertlens.alignment import dynamics_table, scaling_table
from lensflow.expertlens.naming import parse_source_label


def main(sm):
    setup_logging(sm.log[0])
    p = sm.params
    alignment = io.read_table(sm.input.alignment)
    sims = {parse_source_label(label): path for label, path in zip(p.labels, sm.input.similarities)}
    neurons = {(m, d): io.read_table(path) for (t, m, d), path in sims.items() if t == "neurons" and "@" not in m}
    baselines = {}
    for (t, m, d), path in sims.items():
        if t == "baseline":
            baselines[(io.read_metadata(path)["baseline"], m, d)] = io.read_table(path)
    pairs = {n: io.read_table(x) for n, x in zip(p.pairs, sm.input.pairs)}
    rows = claims.alignment_claims(alignment, p.measure)
    rows.append(claims.best_tau_claim(alignment, p.taus))
    rows += claims.baseline_claims(neurons, baselines, pairs, p.measure, p.n_boot, p.seed)
    rows.append(claims.count_claim(pd.concat([io.read_table(x) for x in sm.input.counts])))
    rows += claims.stability_claims(io.read_table(sm.input.stability), p.measure)
    scaling, dyn = scaling_table(alignment, p.models), dynamics_table(alignment)
    for pairs_name in p.pairs:  # every human set: the first may cover few pairs offline
        sc = scaling[(scaling["measure"] == p.measure) & (scaling["pairs"] == pairs_name)]
        for dataset, g in sc.groupby("dataset"):
            rows.append(claims.trend_claim(f"alignment grows with model size ({dataset}, {pairs_name})",
                                           g["n_params"], g["rho"], "parameters"))
        dy = dyn[(dyn["measure"] == p.measure) & (dyn["pairs"] == pairs_name)]
        for model in (p.models if dy.empty else dy["model"].unique()):
            g = dy[dy["model"] == model]
            rows.append(claims.trend_claim(f"alignment grows over training ({model}, {pairs_name})", g["step"],
                                           g["rho"], "training step"))
    for model, path in zip(p.models, sm.input.causal):
        rows += claims.causal_claims(io.read_table(path), model)
    rows += claims.domain_claims(pd.concat([io.read_table(x) for x in sm.input.domains], ignore_index=True))
    write_csv_md(pd.DataFrame(rows), sm.output.csv, sm.output.md,
                 title="ExpertLens claims: what this run measured (95% CIs; verdicts are mechanical)")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
