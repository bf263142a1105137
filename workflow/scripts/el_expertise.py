"""Expertise of every unit for every concept (AP of max-pooled responses), expert counts and locations.

Snakemake rule `el_expertise`: input.responses (activation cache), input.membership
(concept, text_id, label); params: model, dataset, taus, tau_grid, seed; threads
-> output.expertise, output.counts (AP > t on the grid), output.location (experts per layer/kind/tau).
"""

import numpy as np

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.expertise_store import write_expertise
from lensflow.expertlens.pipeline import check_membership, iter_expertise


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    membership = io.read_table(sm.input.membership, required=["concept", "text_id", "label"])
    check_membership(membership, sm.input.membership)
    meta = {"model": p.model, "dataset": p.dataset, "seed": p.seed, "responses": sm.input.responses}
    start, stop, num = p.tau_grid
    # streamed: one module's table in memory at a time (paper scale has ~170M rows)
    res = write_expertise(iter_expertise(sm.input.responses, membership, threads=sm.threads), sm.output.expertise,
                          {**meta, "table": "expertise"},
                          np.linspace(start, stop, int(num)), p.taus)
    meta.update(n_concepts=len(res["concepts"]), n_units=res["n_units"])
    counts = res["counts"]
    io.write_table(counts.assign(model=p.model, dataset=p.dataset), sm.output.counts, {**meta, "table": "counts"})
    io.write_table(res["location"].assign(model=p.model, dataset=p.dataset), sm.output.location,
                   {**meta, "table": "location"})
    log.info("%s/%s: %d concepts x %d units; median experts at tau=%.2f: %s", p.model, p.dataset,
             meta["n_concepts"], meta["n_units"], p.taus[0],
             counts[np.isclose(counts["tau"], p.taus[0])]["n_experts"].median())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
