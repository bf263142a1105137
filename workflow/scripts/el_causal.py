"""ExpertLens causal check: force each concept's top-k experts vs k random units vs nothing.

Snakemake rule `el_causal`: input.model (folder), input.expertise (Parquet: concept, module, unit,
ap, on_p50, ... for all units); params: concepts (names; empty -> the n_concepts concepts with the
highest max AP), n_concepts, k, n_random, max_new_tokens, n_samples (0 = exact probability only),
hook, seed -> output.table (per-prompt rows), output.summary (tidy summary). The word probed is
the concept name itself, after the neutral prompts in lensflow.expertlens.causal.check.NEUTRAL_PROMPTS.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import model_job
from lensflow.expertlens.causal.check import NEUTRAL_PROMPTS, causal_concepts, causal_effect
from lensflow.expertlens.expertise_store import max_ap, read_concepts


def main(sm):
    log, device, model, tok, manifest = model_job(sm)
    p = sm.params
    concepts = causal_concepts(max_ap(sm.input.expertise), p.concepts, p.n_concepts)
    # only the chosen concepts' rows: the whole table does not fit in memory at paper scale
    expertise = read_concepts(sm.input.expertise, concepts, ["concept", "module", "unit", "ap", "on_p50"])
    tables, summaries = [], []
    for concept in concepts:
        res = causal_effect(model, tok, expertise[expertise["concept"] == concept], concept, k=p.k,
                            n_random=p.n_random, seed=p.seed, hook=p.hook, device=device,
                            max_new_tokens=p.max_new_tokens, n_samples=p.n_samples)
        tables.append(res["table"])
        summaries.append(res["summary"])
        s = res["summary"].set_index(["measure", "condition"])
        log.info("%s: P(word) baseline %.3g, experts %.3g, random %.3g (experts-random p=%.3g)", concept,
                 s.loc[("p", "baseline"), "mean"], s.loc[("p", "experts"), "mean"], s.loc[("p", "random"), "mean"],
                 s.loc[("p", "experts-random"), "p_value"])
    meta = {"model": manifest.get("name"), "model_source": manifest.get("source", {}), "concepts": concepts,
            "k": p.k, "n_random": p.n_random, "max_new_tokens": p.max_new_tokens, "n_samples": p.n_samples,
            "hook": p.hook, "seed": p.seed, "n_concepts": p.n_concepts, "prompts": NEUTRAL_PROMPTS,
            "statistics": "t 95% CI of means; paired Wilcoxon signed-rank p; bootstrap CI of ratio"}
    io.write_table(pd.concat(tables, ignore_index=True), sm.output.table, meta)
    io.write_table(pd.concat(summaries, ignore_index=True), sm.output.summary, meta)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
