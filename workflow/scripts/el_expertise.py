"""Expertise of every unit for every concept (AP of max-pooled responses), expert counts and locations.

Snakemake rule `el_expertise`: input.responses (activation cache), input.membership
(concept, text_id, label); params: model, dataset, taus, tau_grid, seed
-> output.expertise, output.counts (AP > t on the grid), output.location (experts per layer/kind/tau).
"""

import numpy as np

from lensflow import io
from lensflow.expertlens import check_membership, compute_expertise, expert_counts, expert_location
from lensflow.runtime import setup_logging


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    membership = io.read_table(sm.input.membership, required=["concept", "text_id", "label"])
    check_membership(membership, sm.input.membership)
    expertise = compute_expertise(sm.input.responses, membership)
    meta = {"model": p.model, "dataset": p.dataset, "seed": p.seed, "responses": sm.input.responses,
            "n_concepts": int(expertise["concept"].nunique()), "n_units": int(len(expertise) / expertise["concept"].nunique())}
    io.write_table(expertise, sm.output.expertise, {**meta, "table": "expertise"})
    start, stop, num = p.tau_grid
    counts = expert_counts(expertise, np.linspace(start, stop, int(num)))
    io.write_table(counts.assign(model=p.model, dataset=p.dataset), sm.output.counts, {**meta, "table": "counts"})
    location = expert_location(expertise, p.taus)
    io.write_table(location.assign(model=p.model, dataset=p.dataset), sm.output.location, {**meta, "table": "location"})
    log.info("%s/%s: %d concepts x %d units; median experts at tau=%.2f: %s", p.model, p.dataset,
             meta["n_concepts"], meta["n_units"], p.taus[0],
             counts[np.isclose(counts["tau"], p.taus[0])]["n_experts"].median())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
