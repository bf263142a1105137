"""Input-embedding baseline: cosine between the LM's own input embedding rows of the concepts.

Snakemake rule: input.model (materialised model folder), input.concepts (Parquet: concept, kept),
params.model (registry name), params.seed (metadata) -> output[0] (long format, measure="input_embedding"). A word's
vector is the mean of its sub-tokens' rows, tokenised as " word" (see baselines.py); sub-token
counts per word and any unrepresentable words are in the metadata.
"""

import time

from lensflow import baselines, io, models
from lensflow.runtime import setup_logging


def main(sm):
    log = setup_logging(sm.log[0])
    t0 = time.perf_counter()
    concepts = baselines.kept_concepts(io.read_table(sm.input.concepts, required=["concept", "kept"]))
    model, tokenizer, _ = models.load(sm.input.model)
    vectors, n_subtokens = baselines.input_embedding_vectors(model, tokenizer, concepts)
    missing = [c for c in concepts if c not in vectors]
    df = baselines.cosine_pairs(vectors, "input_embedding")
    multi = {w: n for w, n in n_subtokens.items() if n != 1}
    dim = int(model.get_input_embeddings().weight.shape[1])
    meta = {"baseline": "input_embedding", "model": sm.params.model, "dim": dim,
            "tokenisation": "' ' + word, no special tokens, mean over sub-tokens", "n_concepts": len(concepts),
            "n_covered": len(vectors), "missing": missing, "n_subtokens": n_subtokens,
            "seed": sm.params.seed}
    io.write_table(df, sm.output[0], meta)
    log.info("input_embedding (%s): %d/%d concepts, %d pairs, %d multi-token words %s, missing %s (%.1f s)",
             sm.params.model, len(vectors), len(concepts), len(df), len(multi), multi, missing,
             time.perf_counter() - t0)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
