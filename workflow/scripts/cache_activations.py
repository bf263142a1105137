"""Cache one model's activations on one text table (the shared cache of both pipelines).

Snakemake rule `cache_activations`: input.model (folder), input.texts (Parquet with text_id, text);
params: model, corpus, spec (modules/hook/pooling/dtype), batch_size, max_length, bf16_autocast
(true/false/auto: resolved on this job's device; recorded in the metadata and the log),
rows_per_group, seed -> output[0] (Parquet). Uses CUDA when the job has a gpu and CUDA exists.
"""

from lensflow.core import io
from lensflow.core.cache import CacheSpec, cache_activations
from lensflow.core.runtime import model_job


def main(sm):
    log, device, model, tok, manifest = model_job(sm)
    p = sm.params
    texts = io.read_table(sm.input.texts, columns=None, required=["text_id", "text"])
    meta = {"model": p.model, "model_source": manifest.get("source", {}), "revision":
            manifest.get("source", {}).get("revision"), "corpus": p.corpus, "seed": p.seed}
    info = cache_activations(model, tok, texts, CacheSpec(**p.spec), sm.output[0], batch_size=p.batch_size,
                             max_length=p.max_length, device=device, bf16_autocast=p.bf16_autocast,
                             rows_per_group=p.rows_per_group, meta=meta, source=sm.input.texts)
    log.info("%s on %s: %d modules, %d tokens, device %s, %s", p.model, p.corpus, len(info["modules"]),
             info["n_tokens"], device, "bf16 autocast" if info["bf16_autocast"] else "fp32")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
