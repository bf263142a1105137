"""Layer divergence between a base and a fine-tuned model (LFP §3.2, App. C) and the layer selections.

Snakemake rule `lfp_divergence`: input.base, input.tuned (model folders); params: model, task, k, seed (metadata)
-> output.table (Parquet: layer, divergence, n_params, n_tensors, rank), output.selection (JSON with
the k highest-divergence layers, the k lowest-divergence layers and the k first layers).
"""

import json

from lensflow.core import io, models
from lensflow.core.io import atomic_path
from lensflow.core.runtime import setup_logging
from lensflow.lfp.finetune.divergence import layer_divergence, select_layers


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    base, _, _ = models.load(sm.input.base, dtype="float32")
    tuned, _, _ = models.load(sm.input.tuned, dtype="float32")
    table = layer_divergence(base, tuned)
    table["rank"] = table["divergence"].rank(ascending=False, method="first").astype(int)
    selection = {which: select_layers(table, k=p.k, which=which) for which in ("highest", "lowest", "first")}
    meta = {"model": p.model, "task": p.task, "k": p.k, "dtype": "float32", "seed": p.seed, **selection}
    io.write_table(table, sm.output.table, meta)
    with atomic_path(sm.output.selection) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    log.info("%s/%s: total divergence %.4g; top-%d layers %s", p.model, p.task, table["divergence"].sum(), p.k,
             selection["highest"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
