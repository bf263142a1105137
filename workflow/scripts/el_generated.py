"""ExpertLens "generated" data set: an instruct model writes each concept's positive sentences.

Snakemake rule `el_dataset_generated`: input.model (folder; backend local only), input.concepts
(concept, kept, ...), input.pairs (human-judgment pair tables); params: dataset (its
expertlens.datasets entry: backend local | openai, n_positive, n_negative, max_concepts (at most
that many of the kept concepts, chosen to keep each pair set scorable), prompt, max_new_tokens, temperature, top_p, batch_size (local)), endpoint
(openai: base_url, model, api_key_env, timeout, max_retries), cache_dir (openai: every response
cached there), min_positive, seed, generator (a name for logs and metadata) -> output.sentences
(text_id, text), output.membership (concept, text_id, label). Concepts with fewer than
min_positive generated sentences are dropped (logged, `dropped` in the metadata); when fewer than
two are left the job fails before writing anything, naming the data set (wildcards.dataset) and
each concept's rejection reasons (generate.require_usable). A local model uses CUDA when the job
has a gpu and CUDA exists; the endpoint's API key is read from the environment only, never written.
"""

import time

from lensflow.core import io
from lensflow.core.runtime import model_job, seed_everything, setup_logging
from lensflow.expertlens import concept_choice, concepts, generate


def endpoint_sentences(sm, kept, stats):
    """Sentences from an OpenAI-compatible endpoint; (got, source metadata, "device" for the log)."""
    p, ds, ep = sm.params, sm.params.dataset, sm.params.endpoint
    client = generate.EndpointGenerator(ep["base_url"], ep["model"], cache_dir=p.cache_dir,
                                        api_key_env=ep["api_key_env"], timeout=ep["timeout"],
                                        max_retries=ep["max_retries"], temperature=ds["temperature"],
                                        top_p=ds["top_p"], max_tokens=ds["max_new_tokens"])
    try:
        got = generate.generate_sentences_endpoint(client, kept, ds["n_positive"], ds["prompt"], p.seed, stats=stats)
    finally:
        client.close()
    stats.update(http_calls=client.http_calls, cache_hits=client.hits, cache_misses=client.misses)
    return got, {"backend": "openai", "base_url": ep["base_url"], "model": ep["model"]}, "endpoint"


def main(sm):
    p, ds = sm.params, sm.params.dataset
    if ds["backend"] == "openai":
        log = setup_logging(sm.log[0])
        seed_everything(p.seed)
    else:
        log, device, model, tok, manifest = model_job(sm)
    table = io.read_table(sm.input.concepts, required=["concept", "kept"])
    kept = table.concept[table.kept].tolist()
    if ds["max_concepts"] and len(kept) > ds["max_concepts"]:
        pairs = [io.read_table(path, required=["word_a", "word_b"]) for path in sm.input.pairs]
        sub = concept_choice.choose_concepts(pairs, dict.fromkeys(kept, 1), 1, ds["max_concepts"])
        log.info("%d of %d concepts get generated sentences (max_concepts); pairs covered per set: %s",
                 int(sub.kept.sum()), len(kept), [concept_choice.pairs_covered([df], sub.concept[sub.kept]) for df in pairs])
        kept = sub.concept[sub.kept].tolist()
    stats, t0 = {}, time.time()
    if ds["backend"] == "openai":
        got, source, device = endpoint_sentences(sm, kept, stats)
    else:
        got = generate.generate_sentences(model, tok, kept, ds["n_positive"], ds["prompt"], ds["max_new_tokens"],
                                          ds["temperature"], ds["top_p"], ds["batch_size"], p.seed, device,
                                          stats=stats)
        source = manifest.get("source", {})
    secs = time.time() - t0
    log.info("%s on %s: %d samples, %d kept (%d by an inflected form only), %d new tokens in %.0f s "
             "(%.1f tokens/s), %d rounds; rejected %s", p.generator, device, stats["samples"], stats["kept"],
             stats["inflected"], stats["new_tokens"], secs, stats["new_tokens"] / max(secs, 1e-9), stats["rounds"],
             stats["rejected"])
    if ds["backend"] == "openai":
        log.info("endpoint: %d HTTP calls, %d cached answers reused", stats["http_calls"], stats["cache_hits"])
    dropped = {c: f"only {len(v)} generated sentences (< min_positive {p.min_positive})"
               for c, v in got.items() if len(v) < p.min_positive}
    for c, why in dropped.items():
        log.info("dropped concept %r: %s", c, why)
    generate.require_usable(sm.wildcards.dataset, p.generator, got, stats, p.min_positive)  # before anything is written
    positives = {c: v for c, v in got.items() if c not in dropped}
    sents, member = concepts.build_bank(positives, ds["n_negative"], p.seed)
    log.info("generated bank: %d concepts (%d dropped), %d sentences", len(positives), len(dropped), len(sents))
    meta = {"dataset": "generated", "synthetic": True, "generator": p.generator, "backend": ds["backend"],
            "generator_source": source, "prompt": ds["prompt"],
            "max_new_tokens": ds["max_new_tokens"], "temperature": ds["temperature"], "top_p": ds["top_p"],
            "n_concepts": len(positives), "max_concepts": ds["max_concepts"], "n_sentences": len(sents), "n_positive": ds["n_positive"],
            "n_negative": ds["n_negative"], "min_positive": p.min_positive, "seed": p.seed, "dropped": dropped,
            "generation": {**stats, "seconds": round(secs, 1), "device": str(device)}}
    io.write_table(sents, sm.output.sentences, meta)
    io.write_table(member, sm.output.membership, meta)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
