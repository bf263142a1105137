"""Domain structure: hierarchical clustering and a concept graph on Jaccard at the lowest tau.

Snakemake rule `el_domains`: input.similarity; params: model, dataset, tau, categories (CSV path
concept,category or ""), n_clusters (0 = one per category, else sqrt(n_concepts)), seed, dpi (figures.dpi)
-> output.table (one row: clusters, ARI vs categories and its permutation p), output.png, output.pdf.
"""

import numpy as np
import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.alignment import category_agreement, permutation_ari, square
from lensflow.expertlens.figures.domains import cluster_concepts, plot_domains
from lensflow.expertlens.naming import jaccard_measure


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    names, jaccard = square(io.read_table(sm.input.similarity), jaccard_measure(p.tau))
    categories = None
    if p.categories:
        cats = io.read_table(p.categories) if p.categories.endswith(".parquet") else pd.read_csv(p.categories)
        categories = dict(zip(cats["concept"].str.lower(), cats["category"]))
    n_clusters = p.n_clusters or (len(set(categories.values())) if categories else max(2, round(np.sqrt(len(names)))))
    clusters = cluster_concepts(names, jaccard, n_clusters)
    agreement = category_agreement(names, clusters, categories)
    p_perm = permutation_ari(names, clusters, categories, seed=p.seed) if categories else float("nan")
    plot_domains(names, jaccard, sm.output.png, sm.output.pdf, tau=p.tau, categories=categories, dpi=p.dpi)
    row = {"model": p.model, "dataset": p.dataset, "tau": p.tau, "n_concepts": len(names), "n_clusters": n_clusters,
           **agreement, "p_permutation": p_perm,
           "mean_jaccard": float(jaccard[np.triu_indices(len(names), 1)].mean())}
    io.write_table(pd.DataFrame([row]), sm.output.table, {"seed": p.seed, "table": "domains"})
    log.info("domains %s/%s: %s", p.model, p.dataset, row)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
