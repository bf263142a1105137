"""Contrastive triples (x+, x0, x-) of one task (LFP §3.3): VADER word substitutions in review
sentences, or synthetic helpful / neutral / harmful rewrites of preference prompts (hh, toxic).

Snakemake rule `lfp_triples`: input.table (reviews or preference pairs), input.lexicon; params:
task, kind (vader/hh/toxic), n_triples, min_abs_value, seed -> output[0] (Parquet, one row per element).
"""

from lensflow import io
from lensflow.runtime import setup_logging
from lensflow.triples import corpus_lexicon, rewrite_triples, vader_triples


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    table = io.read_table(sm.input.table)
    if p.kind == "vader":
        lex = io.read_table(sm.input.lexicon, required=["token", "value"])
        lexicon = dict(zip(lex["token"], lex["value"].astype(float)))
        words = corpus_lexicon(table["text"], lexicon)
        triples = vader_triples(table[["text_id", "text"]], words, p.n_triples, seed=p.seed,
                                min_abs_value=p.min_abs_value)
        log.info("%d lexicon words occur >= 2 times in the corpus; substitutes drawn from them", len(words))
    else:
        triples = rewrite_triples(list(dict.fromkeys(table["prompt"])), p.kind, p.n_triples, seed=p.seed)
    n = triples["triple_id"].nunique()
    if n < p.n_triples:
        log.warning("%s: only %d of %d triples could be formed", p.task, n, p.n_triples)
    io.write_table(triples, sm.output[0], {"task": p.task, "kind": p.kind, "seed": p.seed, "n_triples": n,
                                           "synthetic": bool(triples["synthetic"].any())})
    log.info("%s (%s): %d triples", p.task, p.kind, n)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
