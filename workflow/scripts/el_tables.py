"""ExpertLens tables: concepts (kept/dropped and why, sentences per data set), domains, causal check.

Snakemake rule `el_tables`: input.concepts, input.memberships (per data set), input.domains,
input.causal (per model); params.datasets, params.models -> CSV + Markdown of each table.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.tables import write_csv_md


def main(sm):
    setup_logging(sm.log[0])
    p = sm.params
    concepts = io.read_table(sm.input.concepts)
    for name, path in zip(p.datasets, sm.input.memberships):
        m = io.read_table(path)
        pos = m[m["label"] == "positive"].groupby("concept").size()
        concepts[f"positives_{name}"] = concepts["concept"].map(pos).fillna(0).astype(int)
    concepts = concepts.sort_values(["kept", "concept"], ascending=[False, True])
    write_csv_md(concepts, sm.output.concepts_csv, sm.output.concepts_md,
                 title="ExpertLens concepts: kept or dropped (with the reason), positive sentences per data set")
    domains = pd.concat([io.read_table(x) for x in sm.input.domains], ignore_index=True)
    write_csv_md(domains, sm.output.domains_csv, sm.output.domains_md,
                 title="ExpertLens domain structure: clustering on Jaccard, agreement with category labels (ARI)")
    causal = pd.concat([io.read_table(x).assign(model=m) for m, x in zip(p.models, sm.input.causal)], ignore_index=True)
    write_csv_md(causal, sm.output.causal_csv, sm.output.causal_md,
                 title="ExpertLens causal check: forcing top-k experts vs k random units vs no intervention")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
