"""Human alignment: Spearman rho (bootstrap CI) of every similarity source against every human set.

Snakemake rule `el_alignment`: input.similarities (one per label), input.pairs (word-pair tables),
input.manifests (model folders, for sizes); params: labels ("source_type|model|dataset"), pairs
(names), run_models, n_boot, seed -> output.table (Parquet), output.csv, output.md.
"""

import json
from pathlib import Path

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.tables import write_csv_md
from lensflow.expertlens.alignment import alignment_rows
from lensflow.expertlens.naming import parse_source_label


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    pairs = {name: io.read_table(path, required=["word_a", "word_b", "score"]) for name, path in zip(p.pairs, sm.input.pairs)}
    sizes = {m: json.loads((Path(d) / "lensflow_model.json").read_text())["n_params"]
             for m, d in zip(p.run_models, sm.input.manifests)}
    rows = []
    for label, path in zip(p.labels, sm.input.similarities):
        source_type, model, dataset = parse_source_label(label)
        table = alignment_rows(io.read_table(path), pairs, n_boot=p.n_boot, seed=p.seed)
        rows.append(table.assign(source_type=source_type, model=model, dataset=dataset,
                                 n_params=sizes.get(model)))
    df = pd.concat(rows, ignore_index=True)
    df["ceiling"] = float("nan")  # no inter-annotator agreement ships with these human sets
    front = ["source_type", "model", "dataset", "measure", "pairs", "rho", "ci_low", "ci_high", "p", "n"]
    df = df[front + [c for c in df.columns if c not in front]]
    io.write_table(df, sm.output.table, {"n_boot": p.n_boot, "seed": p.seed, "table": "alignment"})
    write_csv_md(df.drop(columns=["n_boot", "seed", "n_boot_valid"]), sm.output.csv, sm.output.md,
                 title="ExpertLens: alignment with human similarity (Spearman rho, bootstrap 95% CI)")
    best = df[df["source_type"] == "neurons"].sort_values("rho", ascending=False).head(1)
    log.info("best neuron alignment: %s", best.to_dict("records"))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
