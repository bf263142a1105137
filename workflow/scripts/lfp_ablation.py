"""Table 6 (LFP §4.2): task reward of sampled completions with the related features zeroed in every
selected layer's SAE reconstruction, against the plain reconstruction, the unpatched model and
random features of the same number.

Snakemake rule `lfp_ablation`: input.model (tuned), input.saes (AE_n), input.explanations,
input.detection (related = labelled related AND the explanation beats its random-explanation control
at detection), input.layers, input.table (reviews or preference pairs), input.lexicon; params: model, kind,
n_prefixes, prefix_tokens, n_samples, max_new_tokens, n_random, seed -> output[0] (condition, draw,
prompt_id, sample, completion, reward).
"""

import json

from lensflow.core import io
from lensflow.core.runtime import model_job
from lensflow.lfp.finetune.layers import mlp_modules
from lensflow.lfp.sae.model import load_saes
from lensflow.lfp.validation.ablation import ablation_prompts, related_per_module, run_ablation
from lensflow.lfp.validation.detection import related_note, restrict_related
from lensflow.lfp.finetune.rewards import read_lexicon_table


def main(sm):
    log, device, model, tok, _ = model_job(sm)
    p = sm.params
    layers = json.loads(open(sm.input.layers).read())["highest"]
    saes, _ = load_saes(sm.input.saes, device=device)
    modules = mlp_modules(model, layers)
    explanations, scores = io.read_table(sm.input.explanations), io.read_table(sm.input.detection)
    labelled = restrict_related(explanations, scores)
    note = related_note(explanations, scores)
    related = related_per_module(modules, layers, labelled)
    lexicon = read_lexicon_table(sm.input.lexicon)
    prompts = ablation_prompts(p.kind, io.read_table(sm.input.table), tok, p.n_prefixes, p.prefix_tokens, p.seed)
    df = run_ablation(model, tok, prompts, {m: saes[layer] for m, layer in zip(modules, layers)}, related, p.kind,
                      lexicon=lexicon, n_samples=p.n_samples, max_new_tokens=p.max_new_tokens, n_random=p.n_random,
                      seed=p.seed, device=device)
    zeroed = {k: v for k, v in df.attrs.pop("zeroed", {}).items()}
    io.write_table(df, sm.output[0], {"model": p.model, "kind": p.kind, "seed": p.seed, "layers": layers,
                                      "zeroed": zeroed, "n_prompts": len(prompts), "related_note": note})
    log.info("%s: %d prompts; %d related features zeroed (%s)", p.model, len(prompts),
             sum(map(len, related.values())), note)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
