"""Feature overlap of AE_n and AE_2n per layer (LFP §3.4, Fig. 3): Hungarian matching, MMCS.

Snakemake rule `lfp_overlap`: input.small, input.big (multi-layer SAE files); params: model, task
-> output[0] (Parquet: layer, small_feature, big_feature, cosine, rank; MMCS per layer and the random-dictionary MMCS in metadata).
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.sae.model import load_saes
from lensflow.lfp.sae.overlap import feature_overlap
from lensflow.lfp.sae.tables import random_mmcs


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    small, meta = load_saes(sm.input.small)
    big, _ = load_saes(sm.input.big)
    if set(small) != set(big):
        raise ValueError(f"{sm.input.small} and {sm.input.big} cover different layers: {sorted(small)} vs {sorted(big)}")
    tables, mmcs = [], {}
    for layer in sorted(small):
        pairs, mmcs[layer] = feature_overlap(small[layer], big[layer])
        tables.append(pairs.assign(layer=layer, rank=range(len(pairs))))
        log.info("layer %d: MMCS %.3f, best match %.3f", layer, mmcs[layer], pairs["cosine"].max())
    any_layer = next(iter(small))
    chance = random_mmcs(small[any_layer].d_in, small[any_layer].d_hidden, big[any_layer].d_hidden)
    io.write_table(pd.concat(tables, ignore_index=True), sm.output[0],
                   {"model": p.model, "task": p.task, "seed": meta.get("seed"), "mmcs": mmcs, "mmcs_random": chance})


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
