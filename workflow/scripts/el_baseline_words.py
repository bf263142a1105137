"""Static word-vector baseline (GloVe 6B 50d): cosine between the kept concepts' word vectors.

Snakemake rule: input.concepts (Parquet: concept, kept), params.seed (metadata) -> output[0] (long format: concept_a,
concept_b, measure="glove", value). Concepts missing from GloVe's vocabulary are listed in the
metadata (`missing`) and have no rows.
"""

import time

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens import baselines


def main(sm):
    log = setup_logging(sm.log[0])
    t0 = time.perf_counter()
    concepts = baselines.kept_concepts(io.read_table(sm.input.concepts, required=["concept", "kept"]))
    vectors, missing = baselines.glove_vectors(concepts)
    df = baselines.cosine_pairs(vectors, "glove")
    meta = {"baseline": "glove", "source": f"{baselines.GLOVE_PACKAGE} (lowercased lookup)", "dim": 50,
            "n_concepts": len(concepts), "n_covered": len(vectors), "missing": missing, "seed": sm.params.seed}
    io.write_table(df, sm.output[0], meta)
    log.info("glove: %d/%d concepts covered, %d pairs, missing %s (%.1f s)",
             len(vectors), len(concepts), len(df), missing, time.perf_counter() - t0)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
