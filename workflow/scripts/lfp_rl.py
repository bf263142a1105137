"""RL fine-tuning of a base model on the VADER task (LFP paper §3.1) with TRL's RLOO (or GRPO).

Snakemake rule `lfp_rl`:
  input.model (base model folder), input.texts (review table: text), input.lexicon (token, value)
  params.model (name), params.task, params.method ("rloo" | "grpo"), params.n_prompts (None: enough
  for max_steps, or every long review when max_steps <= 0), params.min_chars, params.prompt_tokens
  ([lo, hi]), params.hyper (dict of lensflow.rl.RLHyper fields), params.seed
  -> output.model (tuned folder), output.log (TSV, one row per optimizer step), output.meta (JSON).
The lexicon comes from input.lexicon (the configured data source), not the vaderSentiment package.
params.seed is the run seed unless params.hyper sets its own.
"""

import json

from transformers import AutoTokenizer

from lensflow import io
from lensflow.prompts import review_prompts
from lensflow.rl import RLHyper, train_rl
from lensflow.runtime import pick_device, setup_logging


def main(sm):
    log = setup_logging(sm.log[0])
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    p = sm.params
    hyper = RLHyper.from_dict({"seed": p.seed, **dict(p.hyper)})
    texts = io.read_table(sm.input.texts, required=["text"])
    lex = io.read_table(sm.input.lexicon, required=["token", "value"])
    lexicon = dict(zip(lex["token"], lex["value"].astype(float)))

    n_prompts = p.n_prompts
    if n_prompts is None and hyper.max_steps > 0:  # just enough prompts for max_steps optimizer steps
        per_round = (hyper.batch_size // (hyper.mini_batch_size or hyper.batch_size)) * hyper.num_iterations
        n_prompts = -(-hyper.max_steps // per_round) * hyper.batch_size
    tok = AutoTokenizer.from_pretrained(sm.input.model)
    prompts = review_prompts(texts["text"].tolist(), tok, n_prompts, p.min_chars, tuple(p.prompt_tokens), seed=p.seed)
    # Recorded in the tuned manifest so evaluation can take the next, unseen prompts of the same order.
    prompt_spec = {"seed": p.seed, "n_prompts": len(prompts), "min_chars": p.min_chars,
                   "prompt_tokens": list(p.prompt_tokens)}
    log.info("%s/%s: %d prompts of %d-%d tokens, e.g. %r", p.model, p.task, len(prompts), *p.prompt_tokens, prompts[0])

    meta = train_rl(sm.input.model, sm.output.model, prompts, lexicon, method=p.method, hyper=hyper, device=device,
                    log_path_tsv=sm.output.log, name=f"{p.model}-{p.task}-{p.method}",
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
