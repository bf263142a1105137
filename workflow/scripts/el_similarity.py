"""Concept x concept similarity from expertise: Jaccard of expert sets per tau, cosine of AP vectors.

Snakemake rule `el_similarity`: input.expertise; params: model, dataset, taus, seed -> output[0]
(concept_a, concept_b, measure, value, both_empty).
"""

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.expertise_store import read_ap_matrix
from lensflow.expertlens.pipeline import similarities


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    concepts, ap = read_ap_matrix(sm.input.expertise)  # [n_concepts, n_units], one row group at a time
    sim = similarities(concepts, ap, p.taus)
    io.write_table(sim, sm.output[0], {"model": p.model, "dataset": p.dataset, "taus": p.taus, "seed": p.seed,
                                        "n_concepts": len(concepts), "n_units": int(ap.shape[1])})
    empty = sim[sim["both_empty"]].groupby("measure").size().to_dict()
    log.info("%s/%s: %d concepts; pairs with both expert sets empty per measure: %s", p.model, p.dataset,
             len(concepts), empty or "none")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
