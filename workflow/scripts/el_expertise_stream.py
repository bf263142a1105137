"""Expertise without the response cache: per concept, pooled responses on the device -> expertise rows.

Snakemake rule `el_expertise_streaming` (config `expertlens.expertise.path: streaming`): input.model
(folder), input.sentences (text_id, text), input.membership (concept, text_id, label); params: model,
dataset, taus, tau_grid, spec (the el-units cache: modules/hook/pooling/dtype), batch_size,
max_length, bf16_autocast, seed -> output.expertise, output.counts, output.location: the files, columns
and row groups `el_expertise` writes from the cache (lensflow.expertlens.expertise_stream). Uses CUDA when the
job has a gpu and CUDA exists.
"""

import numpy as np

from lensflow.core import io
from lensflow.core.cache import CacheSpec
from lensflow.core.runtime import model_job
from lensflow.expertlens.expertise_stream import stream_expertise
from lensflow.expertlens.pipeline import check_membership


def main(sm):
    log, device, model, tok, manifest = model_job(sm)
    p = sm.params
    membership = io.read_table(sm.input.membership, required=["concept", "text_id", "label"])
    check_membership(membership, sm.input.membership)
    sentences = io.read_table(sm.input.sentences, columns=["text_id", "text"], required=["text_id", "text"])
    meta = {"model": p.model, "dataset": p.dataset, "seed": p.seed, "model_source": manifest.get("source", {}),
            "revision": manifest.get("source", {}).get("revision"), "responses": "streamed (no el-units cache)"}
    start, stop, num = p.tau_grid
    res = stream_expertise(model, tok, sentences, membership, CacheSpec(**p.spec), sm.output.expertise,
                           {**meta, "table": "expertise"}, np.linspace(start, stop, int(num)), p.taus,
                           batch_size=p.batch_size, max_length=p.max_length, device=device,
                           bf16_autocast=p.bf16_autocast, source=sm.input.membership)
    meta.update(n_concepts=len(res["concepts"]), n_units=res["n_units"], expertise_path="streaming")
    counts = res["counts"]
    io.write_table(counts.assign(model=p.model, dataset=p.dataset), sm.output.counts, {**meta, "table": "counts"})
    io.write_table(res["location"].assign(model=p.model, dataset=p.dataset), sm.output.location,
                   {**meta, "table": "location"})
    log.info("%s/%s (streaming, %s): %d concepts x %d units; largest concept block %.1f MB; median experts at "
             "tau=%.2f: %s", p.model, p.dataset, device, meta["n_concepts"], meta["n_units"],
             res["info"]["peak_block_bytes"] / 2**20, p.taus[0],
             counts[np.isclose(counts["tau"], p.taus[0])]["n_experts"].median())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
