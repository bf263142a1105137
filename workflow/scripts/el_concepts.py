"""ExpertLens concepts: split the corpora into a sentence pool and choose the concept words.

Snakemake rule `el_concepts`: input.corpora (text tables: text_id, text), input.pairs (word_a,
word_b, score); params.min_positive, params.max_concepts, params.min_chars, params.max_chars, params.seed ->
output.sentences (text_id, text: the pool mined later), output.concepts (concept, n_available,
kept, reason: one row per pair word, dropped ones with the reason). The choice balances the pair
sets (concept_choice.choose_concepts); the pairs covered per set are logged and in the metadata.
"""

from pathlib import Path

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens import concept_choice, concepts


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    texts = [t for path in sm.input.corpora for t in io.read_table(path, required=["text_id", "text"])["text"]]
    sents = concepts.split_sentences(texts, min_chars=p.min_chars, max_chars=p.max_chars)
    corpora = [Path(x).stem for x in sm.input.corpora]
    log.info("%d distinct sentences (%d-%d chars) from %d texts of %s", len(sents), p.min_chars, p.max_chars,
             len(texts), corpora)
    pairs = [io.read_table(path, required=["word_a", "word_b", "score"]) for path in sm.input.pairs]
    words = {w.strip().lower() for df in pairs for w in pd.concat([df.word_a, df.word_b]).astype(str)}
    table = concept_choice.choose_concepts(pairs, concepts.count_mentions(sents, words), p.min_positive, p.max_concepts)
    kept = table.concept[table.kept]
    for row in table[~table.kept].itertuples():
        log.info("dropped concept %r: %s", row.concept, row.reason)
    n_pairs = concept_choice.pairs_covered(pairs, kept)
    by_set = {Path(x).stem: concept_choice.pairs_covered([df], kept) for x, df in zip(sm.input.pairs, pairs)}
    log.info("%d candidate words: %d kept, %d too rare, %d over max_concepts; %d pairs have both words kept "
             "(per pair set: %s)", len(table), len(kept), table.reason.str.startswith("only").sum(),
             table.reason.str.startswith("over").sum(), n_pairs, by_set)
    io.write_table(pd.DataFrame({"text_id": range(len(sents)), "text": sents}).astype({"text_id": "int64"}),
                   sm.output.sentences, {"corpora": corpora, "n_texts": len(texts), "n_sentences": len(sents),
                                         "min_chars": p.min_chars, "max_chars": p.max_chars,
                                         "seed": p.seed})
    io.write_table(table, sm.output.concepts, {
        "corpora": corpora, "pairs": [Path(x).stem for x in sm.input.pairs], "min_positive": p.min_positive,
        "max_concepts": p.max_concepts, "n_candidates": len(table), "n_kept": len(kept), "pairs_covered": n_pairs,
        "pairs_covered_by_set": by_set, "seed": p.seed})


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
