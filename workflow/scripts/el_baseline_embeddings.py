"""Input-embedding baseline: cosine between the LM's own input embedding rows of the concepts.

Snakemake rule: input.model (materialised model folder), input.concepts (Parquet: concept, kept),
params.model (registry name), params.seed (metadata) -> output[0] (long format, measure="input_embedding"). A word's
vector is the mean of its sub-tokens' rows, tokenised as " word" (see baselines.py); sub-token
counts per word and any unrepresentable words are in the metadata. Only those rows of the
embedding tensor are read from the folder's safetensors (baselines.InputEmbedding), never the
model, so the job needs the CPU family's memory whatever the model's size.
"""

import time

from transformers import AutoTokenizer

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens import baselines


def main(sm):
    log = setup_logging(sm.log[0])
    t0 = time.perf_counter()
    concepts = baselines.kept_concepts(io.read_table(sm.input.concepts, required=["concept", "kept"]))
    embedding = baselines.InputEmbedding(sm.input.model)  # [vocab, d_model], nothing read yet
    tokenizer = AutoTokenizer.from_pretrained(sm.input.model)
    vectors, n_subtokens = baselines.input_embedding_vectors(embedding, tokenizer, concepts)
    missing = [c for c in concepts if c not in vectors]
    df = baselines.cosine_pairs(vectors, "input_embedding")
    multi = {w: n for w, n in n_subtokens.items() if n != 1}
    dim = int(embedding.shape[1])
    meta = {"baseline": "input_embedding", "model": sm.params.model, "dim": dim, "tensor": embedding.name,
            "tokenisation": "' ' + word, no special tokens, mean over sub-tokens", "n_concepts": len(concepts),
            "n_covered": len(vectors), "missing": missing, "n_subtokens": n_subtokens,
            "seed": sm.params.seed}
    io.write_table(df, sm.output[0], meta)
    log.info("input_embedding (%s): %d/%d concepts, %d pairs, %d multi-token words %s, missing %s (%.1f s)",
             sm.params.model, len(vectors), len(concepts), len(df), len(multi), multi, missing,
             time.perf_counter() - t0)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
