"""RL fine-tuning of a base model on the VADER task (LFP paper §3.1) with TRL's RLOO (or GRPO).

Snakemake rule `lfp_rl`:
  input.model (base model folder), input.texts (review table: text), input.lexicon (token, value)
  params.model (name), params.task, params.method ("rloo" | "grpo"), params.n_prompts (None: enough
  for max_steps, or every prompt left after the held-out part when max_steps <= 0), params.n_heldout
  (finetune.eval.n_prompts: prompts held out for lfp_rl_eval), params.min_chars, params.prompt_tokens
  ([lo, hi]), params.hyper (dict of lensflow.lfp.finetune.rl.RLHyper fields), params.seed
  -> output.model (tuned folder), output.log (TSV, one row per optimizer step), output.meta (JSON).
The held-out prompts are split off before training takes its own (lensflow.lfp.finetune.prompts.split_prompts); the
split's spec and sizes go into the tuned manifest (source.prompts) and output.meta (prompts).
The lexicon comes from input.lexicon (the configured data source), not the vaderSentiment package.
params.seed is the run seed unless params.hyper sets its own.
"""

import json

from transformers import AutoTokenizer

from lensflow.core import io
from lensflow.core.runtime import pick_device, setup_logging
from lensflow.lfp.finetune import rl
from lensflow.lfp.finetune.prompts import split_prompts
from lensflow.lfp.finetune.rewards import read_lexicon_table


def main(sm):
    log = setup_logging(sm.log[0])
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    p = sm.params
    hyper = rl.RLHyper.from_dict({"seed": p.seed, **dict(p.hyper)})
    texts = io.read_table(sm.input.texts, required=["text"])
    lexicon = read_lexicon_table(sm.input.lexicon)

    tok = AutoTokenizer.from_pretrained(sm.input.model)
    split = split_prompts(texts["text"].tolist(), tok, p.n_heldout, rl.train_prompt_count(hyper, p.n_prompts),
                          min_train=hyper.batch_size, min_chars=p.min_chars, prompt_tokens=p.prompt_tokens,
                          seed=p.seed, task=p.task)
    # In the tuned manifest too: evaluation recomputes the split from it and checks it is the same.
    prompt_spec = {"seed": p.seed, "min_chars": p.min_chars, "prompt_tokens": list(p.prompt_tokens), **split.sizes}
    log.info("%s/%s: %d training prompts of %d-%d tokens (%d held out for evaluation, %d dropped as held-out texts, "
             "%d unused), e.g. %r", p.model, p.task, len(split.train), *p.prompt_tokens, len(split.heldout),
             split.sizes["n_train_dropped_as_heldout"], split.sizes["n_unused"], split.train[0])

    meta = rl.train_rl(sm.input.model, sm.output.model, split.train, lexicon, method=p.method, hyper=hyper,
                       device=device, log_path_tsv=sm.output.log, name=f"{p.model}-{p.task}-{p.method}",
                       extra_source={"task": p.task, "prompts": prompt_spec})
    data_meta = io.read_metadata(sm.input.texts)
    meta.update(model=p.model, task=p.task, prompts=prompt_spec, seed=p.seed,
                texts={"path": str(sm.input.texts), "substitute_for": data_meta.get("substitute_for")},
                lexicon={"path": str(sm.input.lexicon), "n_words": len(lexicon)})
    if data_meta.get("substitute_for"):
        meta["deviations"].append(f"prompts: {data_meta.get('name', 'texts')} stands in for {data_meta['substitute_for']}")
    with io.atomic_path(sm.output.meta) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
