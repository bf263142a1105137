"""Per-token MLP outputs of the tuned model at its selected layers, on the task's texts (LFP §3.2).

Snakemake rule `lfp_activations`: input.model (tuned folder), input.texts, input.layers (layers.json);
params: model, selections (layers.json keys), dtype, batch_size, max_length, bf16_autocast
(true/false/auto: resolved on this job's device; recorded in the metadata and the log),
rows_per_group, seed -> output[0] (the shared per-token cache format, padding excluded).
"""

import json

from lensflow.core import io
from lensflow.core.cache import CacheSpec, cache_activations
from lensflow.core.runtime import model_job
from lensflow.lfp.finetune.layers import mlp_modules


def main(sm):
    log, device, model, tok, manifest = model_job(sm)
    p = sm.params
    chosen = json.loads(open(sm.input.layers).read())
    layers = sorted({layer for key in p.selections for layer in chosen[key]})
    modules = mlp_modules(model, layers)
    texts = io.read_table(sm.input.texts, required=["text_id", "text"])
    meta = {"model": p.model, "corpus": sm.input.texts, "seed": p.seed, "layers": layers,
            "selections": {key: chosen[key] for key in p.selections}}
    spec = CacheSpec(modules=modules, hook="output", pooling="none", dtype=p.dtype)
    info = cache_activations(model, tok, texts, spec, sm.output[0], batch_size=p.batch_size,
                             max_length=p.max_length, device=device, bf16_autocast=p.bf16_autocast,
                             rows_per_group=p.rows_per_group, meta=meta)
    log.info("%s: layers %s, %d texts, %d tokens", p.model, layers, info["n_texts"], info["n_tokens"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
