"""Stability: do two models (same data set) or two data sets (same model) give the same similarities?

Snakemake rule `el_stability`: input.similarities (one per run, in params.runs order);
params: runs [(model, dataset)], n_boot, seed -> output.table, output.csv, output.md.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.tables import write_csv_md
from lensflow.expertlens.alignment import stability_rows


def main(sm):
    setup_logging(sm.log[0])
    p = sm.params
    sims = {tuple(run): io.read_table(path) for run, path in zip(p.runs, sm.input.similarities)}
    models = sorted({m for m, _ in sims}, key=[m for m, _ in p.runs].index)
    datasets = sorted({d for _, d in sims}, key=[d for _, d in p.runs].index)
    rows = [stability_rows({m: sims[m, d] for m in models}, "across_models", d, p.n_boot, p.seed) for d in datasets]
    rows += [stability_rows({d: sims[m, d] for d in datasets}, "across_datasets", m, p.n_boot, p.seed) for m in models]
    df = pd.concat(rows, ignore_index=True)
    io.write_table(df, sm.output.table, {"n_boot": p.n_boot, "seed": p.seed, "table": "stability"})
    write_csv_md(df.drop(columns=["n_boot", "seed", "n_boot_valid"]), sm.output.csv, sm.output.md,
                 title="ExpertLens: stability of pairwise similarities (Spearman rho, bootstrap 95% CI)")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
