"""ExpertLens "mined" data set: positives are corpus sentences that mention the concept.

Snakemake rule `el_mined`: input.sentences (text_id, text pool from el_concepts), input.concepts
(concept, kept, ...); params.dataset (its expertlens.datasets entry: n_positive, n_negative),
params.seed -> output.sentences
(text_id, text: every bank sentence once), output.membership (concept, text_id, label).
"""

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens import concepts


def main(sm):
    log = setup_logging(sm.log[0])
    p, ds = sm.params, sm.params.dataset
    pool = io.read_table(sm.input.sentences, required=["text_id", "text"])["text"].tolist()
    table = io.read_table(sm.input.concepts, required=["concept", "kept"])
    kept = table.concept[table.kept].tolist()
    positives = concepts.mine(pool, kept, ds["n_positive"], p.seed)
    sents, member = concepts.build_bank(positives, ds["n_negative"], p.seed)
    n = member.groupby(["concept", "label"]).size().unstack(fill_value=0).reindex(
        index=kept, columns=["positive", "negative"], fill_value=0)
    short = n.index[n.positive < ds["n_positive"]].tolist()
    log.info("mined bank: %d concepts, %d sentences; positives per concept %d-%d (%d below n_positive=%d), "
             "negatives %d-%d", len(kept), len(sents), n.positive.min(), n.positive.max(), len(short),
             ds["n_positive"], n.negative.min(), n.negative.max())
    meta = {"dataset": "mined", "synthetic": False, "corpora": io.read_metadata(sm.input.sentences).get("corpora"),
            "n_concepts": len(kept), "n_sentences": len(sents), "n_positive": ds["n_positive"],
            "n_negative": ds["n_negative"], "seed": p.seed, "below_n_positive": short}
    io.write_table(sents, sm.output.sentences, meta)
    io.write_table(member, sm.output.membership, meta)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
