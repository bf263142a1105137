"""Contrastive triples (x+, x0, x-) of one task (LFP §3.3): VADER word substitutions in review
sentences, or helpful / neutral / harmful rewrites of preference entries (hh, toxic): by an instruct
LLM (local or an OpenAI-compatible endpoint, as in the paper) or by offline templates (synthetic).

Snakemake rule `lfp_triples`: input.table (reviews or preference pairs), input.lexicon, input.rewriter
(a local rewriter's model folder, else nothing); params: task, kind (vader/hh/toxic), n_triples,
min_abs_value, rewriter (lfp.triples.rewriter), cache_dir, seed -> output[0] (Parquet, one row per element).
"""

from lensflow.core import io
from lensflow.core.runtime import pick_device, seed_everything, setup_logging
from lensflow.lfp.probes.rewrites import llm_rewrite_triples
from lensflow.lfp.probes.triples import corpus_lexicon, rewrite_triples, vader_triples
from lensflow.lfp.validation.explanations import make_client
from lensflow.lfp.finetune.rewards import read_lexicon_table


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    seed_everything(p.seed)
    table = io.read_table(sm.input.table)
    dropped = 0
    if p.kind == "vader":
        lexicon = read_lexicon_table(sm.input.lexicon)
        words = corpus_lexicon(table["text"], lexicon)
        triples = vader_triples(table[["text_id", "text"]], words, p.n_triples, seed=p.seed,
                                min_abs_value=p.min_abs_value)
        log.info("%d lexicon words occur >= 2 times in the corpus; substitutes drawn from them", len(words))
    elif p.rewriter["backend"] == "template":
        triples = rewrite_triples(list(dict.fromkeys(table["prompt"])), p.kind, p.n_triples, seed=p.seed)
    else:
        device = pick_device(sm.resources.get("gpu", 0), sm.threads)
        client = make_client(p.rewriter, p.cache_dir, list(sm.input.rewriter), device)
        entries = list(dict(zip(table["prompt"], table["chosen"])).items())  # one entry per prompt
        triples, dropped = llm_rewrite_triples(entries, p.kind, p.n_triples, client, seed=p.seed)
        log.info("rewriter %s/%s; cache %s", p.rewriter["backend"], p.rewriter["model"],
                 {k: getattr(client, k, None) for k in ("hits", "misses", "http_calls")})
    n = triples["triple_id"].nunique()
    if n < p.n_triples:
        log.warning("%s: only %d of %d triples could be formed", p.task, n, p.n_triples)
    rewriter = {k: v for k, v in p.rewriter.items() if k in ("backend", "model", "base_url")}
    io.write_table(triples, sm.output[0], {"task": p.task, "kind": p.kind, "seed": p.seed, "n_triples": n,
                                           "synthetic": bool(triples["synthetic"].any()), "rewriter": rewriter,
                                           "n_dropped": dropped})
    log.info("%s (%s): %d triples", p.task, p.kind, n)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
