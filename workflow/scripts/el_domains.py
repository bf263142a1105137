"""Domain structure: hierarchical clustering and a concept graph on Jaccard at the lowest tau.

Snakemake rule `el_domains`: input.similarity, input.categories (none, or one table of labels: a
prepared data set of kind categories with word,category[,pos], or a CSV/Parquet with
concept,category); params: model, dataset, tau, categories (the config value, recorded as the
labels' source), n_clusters (0 = one per category of the labelled concepts, else
sqrt(n_concepts)), n_perm, seed, dpi (figures.dpi)
-> output.table (one row: clusters, ARI vs categories over the labelled concepts, its permutation
p, coverage), output.labels (concept, category, pos, cluster), output.png, output.pdf.
"""

import numpy as np
import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.wordnet import label_words
from lensflow.expertlens.alignment import domain_agreement, square
from lensflow.expertlens.figures.domains import cluster_concepts, plot_domains
from lensflow.expertlens.naming import jaccard_measure


def read_labels(path: str) -> tuple[pd.DataFrame, dict]:
    """(word, category[, pos] table, its metadata) from a prepared data set or a CSV/Parquet file."""
    if path.endswith(".parquet"):
        table, meta = io.read_table(path), io.read_metadata(path)
    else:
        table, meta = pd.read_csv(path), {"source": {"path": path}}
    table = table.rename(columns={"concept": "word"})
    return table.assign(word=table["word"].astype(str).str.lower()), meta  # concepts are lower case


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    names, jaccard = square(io.read_table(sm.input.similarity), jaccard_measure(p.tau))
    files = list(sm.input.categories)
    table, source = read_labels(files[0]) if files else (pd.DataFrame(columns=["word", "category"]), {})
    labels = label_words(table, names)
    labelled = labels.dropna(subset=["category"])
    categories = dict(zip(labelled["concept"], labelled["category"]))
    n_clusters = p.n_clusters or (len(set(categories.values())) if categories else round(np.sqrt(len(names))))
    n_clusters = int(min(max(2, n_clusters), max(1, len(names))))
    clusters = cluster_concepts(names, jaccard, n_clusters)
    row = domain_agreement(names, clusters, labels, n_perm=p.n_perm, seed=p.seed)
    if files:
        log.info("domain labels from %s: %d of %d concepts labelled; left out of the ARI: %s",
                 p.categories, row["n_labelled"], len(names), row["unlabelled"] or "none")
    plot_domains(names, jaccard, sm.output.png, sm.output.pdf, tau=p.tau, categories=categories or None, dpi=p.dpi)
    row = {"model": p.model, "dataset": p.dataset, "tau": p.tau, "n_concepts": len(names), "n_clusters": n_clusters,
           **row, "categories": p.categories or "",
           "mean_jaccard": float(jaccard[np.triu_indices(len(names), 1)].mean())}
    meta = {"seed": p.seed, "table": "domains", "n_perm": p.n_perm, "categories": p.categories or None,
            "categories_source": source.get("source"), "categories_rule": source.get("labels"),
            "wordnet": source.get("wordnet")}
    io.write_table(pd.DataFrame([row]), sm.output.table, meta)
    io.write_table(labels.assign(cluster=clusters), sm.output.labels, {**meta, "table": "domain_labels"})
    log.info("domains %s/%s: %s", p.model, p.dataset, row)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
