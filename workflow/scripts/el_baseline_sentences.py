"""Sentence-embedding baseline: cosine between concepts' mean MiniLM sentence embeddings.

Snakemake rule: input.sentences (Parquet: text_id, text), input.membership (Parquet: concept,
text_id, label in {positive, negative}), params.seed (metadata) -> output[0] (long format, measure="minilm"). A concept's
vector is the mean of the L2-normalised all-MiniLM-L6-v2 embeddings of its positive sentences;
concepts without positives are listed in the metadata (`missing`). resources.gpu -> CUDA if any.
"""

import time

from lensflow.core import io
from lensflow.core.runtime import pick_device, setup_logging
from lensflow.expertlens import baselines


def main(sm):
    log = setup_logging(sm.log[0])
    t0 = time.perf_counter()
    sentences = io.read_table(sm.input.sentences, required=["text_id", "text"])
    membership = io.read_table(sm.input.membership, required=["concept", "text_id", "label"])
    by_concept = baselines.positive_sentences(sentences, membership)
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    vectors = baselines.sentence_vectors(by_concept, device=device)
    missing = [c for c in by_concept if c not in vectors]
    df = baselines.cosine_pairs(vectors, "minilm")
    meta = {"baseline": "minilm", "source": f"{baselines.MINILM_PACKAGE} (all-MiniLM-L6-v2)", "dim": 384,
            "pooling": "mean of L2-normalised positive-sentence embeddings", "n_concepts": len(by_concept),
            "n_covered": len(vectors), "n_sentences": int(sum(len(s) for s in by_concept.values())),
            "missing": missing, "device": str(device), "seed": sm.params.seed}
    io.write_table(df, sm.output[0], meta)
    log.info("minilm: %d/%d concepts from %d positive sentences on %s, %d pairs, missing %s (%.1f s)",
             len(vectors), len(by_concept), meta["n_sentences"], device, len(df), missing, time.perf_counter() - t0)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
