"""Base vs RL-tuned policy on held-out review prompts: VADER reward and generated lexicon words.

Snakemake rule `lfp_rl_eval`:
  input.base, input.tuned (model folders), input.texts (review table), input.lexicon (token, value)
  params.n_prompts, params.n_samples (completions per prompt per policy), params.min_chars,
  params.prompt_tokens, params.hyper (the task's training hyperparameters: the same
  min_new_tokens / max_new_tokens as training), params.seed
  -> output.rewards (tidy: policy, mean, ci_low, ci_high, n, p, interval; "tuned - base" row),
     output.completions (policy, prompt_id, sample, prompt, completion, reward),
     output.words (word, value, count_base, count_tuned: lexicon words in the completions, Fig. 4).
Held-out prompts: the first params.n_prompts of the prompts the training split off before taking
its own, recomputed from the tuned model's manifest and checked against it (rl_eval.heldout_prompts);
the split's sizes go into every output's metadata (prompts). Both policies get the same prompts and
the same sampling seed.
"""

import json
from pathlib import Path

import pandas as pd

from lensflow.core import io, models
from lensflow.core.runtime import pick_device, setup_logging
from lensflow.lfp.finetune.rewards import make_vader_reward_fn, read_lexicon_table
from lensflow.lfp.finetune.rl import RLHyper
from lensflow.lfp.finetune.rl_eval import heldout_prompts, reward_comparison, sample_completions, word_generation_counts


def main(sm):
    log = setup_logging(sm.log[0])
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    p = sm.params
    # the training's hyperparameter object: completions as long as the policy learned to write
    hyper = RLHyper.from_dict({"seed": p.seed, **dict(p.hyper)})
    texts = io.read_table(sm.input.texts, required=["text"])["text"].tolist()
    lexicon = read_lexicon_table(sm.input.lexicon)
    reward_fn = make_vader_reward_fn(lexicon, include_prompt=True)  # as in training: prompt + completion

    tuned_manifest = json.loads((Path(sm.input.tuned) / models.MANIFEST).read_text())
    frames, prompts, split = [], None, None
    for policy, folder in (("base", sm.input.base), ("tuned", sm.input.tuned)):
        model, tok, _ = models.load(folder, device=device)
        if prompts is None:  # one prompt set for both (the tuned model keeps the base tokenizer)
            prompts, split = heldout_prompts(texts, tok, tuned_manifest, p.n_prompts, p.min_chars, p.prompt_tokens, p.seed)
        df = sample_completions(model, tok, prompts, p.n_samples, hyper.min_new_tokens, hyper.max_new_tokens,
                                seed=p.seed, device=device)
        df["reward"] = reward_fn(prompts=df["prompt"].tolist(), completions=df["completion"].tolist())
        df.insert(0, "policy", policy)
        frames.append(df)
        log.info("%s: %d completions, mean reward %.3f", policy, len(df), df["reward"].mean())
        del model
    comp = pd.concat(frames, ignore_index=True)
    base, tuned = (comp.loc[comp["policy"] == k] for k in ("base", "tuned"))

    meta = {"prompts": {**split, "seed": p.seed, "min_chars": p.min_chars, "prompt_tokens": list(p.prompt_tokens)},
            "n_samples": p.n_samples, "min_new_tokens": hyper.min_new_tokens, "max_new_tokens": hyper.max_new_tokens,
            "sampling": "pure (temperature 1, top_k 0, top_p 1)", "seed": p.seed,
            "tuned": tuned_manifest.get("name"), "base": str(sm.input.base)}
    # paired by held-out prompt (both policies answer the same prompts)
    comparison = reward_comparison(base["reward"], tuned["reward"], seed=p.seed, base_prompt_ids=base["prompt_id"],
                                   tuned_prompt_ids=tuned["prompt_id"])
    io.write_table(comparison, sm.output.rewards, meta)
    io.write_table(comp, sm.output.completions, meta)
    words = pd.merge(word_generation_counts(base["completion"].tolist(), lexicon),
                     word_generation_counts(tuned["completion"].tolist(), lexicon),
                     on=["word", "value"], how="outer", suffixes=("_base", "_tuned"))
    words[["count_base", "count_tuned"]] = words[["count_base", "count_tuned"]].fillna(0).astype(int)
    io.write_table(words.sort_values(["count_tuned", "word"], ascending=[False, True], ignore_index=True),
                   sm.output.words, meta)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
