"""ExpertLens "generated" data set: an instruct model writes each concept's positive sentences.

Snakemake rule `el_generated`: input.model (folder), input.concepts (concept, kept, ...); params:
n_positive, n_negative, min_positive, prompt, max_new_tokens, temperature, top_p, batch_size, seed,
generator (model name) -> output.sentences (text_id, text), output.membership (concept, text_id,
label). Concepts with fewer than min_positive generated sentences are dropped (logged, `dropped`
in the metadata). Uses CUDA when the job has a gpu and CUDA exists.
"""

import time


from lensflow import concepts, generate, io
from lensflow.runtime import model_job


def main(sm):
    log, device, model, tok, manifest = model_job(sm)
    p = sm.params
    table = io.read_table(sm.input.concepts, required=["concept", "kept"])
    kept = table.concept[table.kept].tolist()
    stats, t0 = {}, time.time()
    got = generate.generate_sentences(model, tok, kept, p.n_positive, p.prompt, p.max_new_tokens, p.temperature,
                                      p.top_p, p.batch_size, p.seed, device, stats=stats)
    secs = time.time() - t0
    log.info("%s on %s: %d samples, %d kept, %d new tokens in %.0f s (%.1f tokens/s), %d rounds; rejected %s",
             p.generator, device, stats["samples"], stats["kept"], stats["new_tokens"], secs,
             stats["new_tokens"] / max(secs, 1e-9), stats["rounds"], stats["rejected"])
    dropped = {c: f"only {len(v)} generated sentences (< min_positive {p.min_positive})"
               for c, v in got.items() if len(v) < p.min_positive}
    for c, why in dropped.items():
        log.info("dropped concept %r: %s", c, why)
    positives = {c: v for c, v in got.items() if c not in dropped}
    if not positives:
        log.warning("no concept kept: the generator never wrote a usable sentence (prompt? max_new_tokens?)")
    sents, member = concepts.build_bank(positives, p.n_negative, p.seed)
    log.info("generated bank: %d concepts (%d dropped), %d sentences", len(positives), len(dropped), len(sents))
    meta = {"dataset": "generated", "synthetic": True, "generator": p.generator,
            "generator_source": manifest.get("source", {}), "prompt": p.prompt,
            "max_new_tokens": p.max_new_tokens, "temperature": p.temperature, "top_p": p.top_p,
            "n_concepts": len(positives), "n_sentences": len(sents), "n_positive": p.n_positive,
            "n_negative": p.n_negative, "min_positive": p.min_positive, "seed": p.seed, "dropped": dropped,
            "generation": {**stats, "seconds": round(secs, 1), "device": str(device)}}
    io.write_table(sents, sm.output.sentences, meta)
    io.write_table(member, sm.output.membership, meta)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
