"""DPO fine-tuning of one model on one preference task (LFP §3.1, HH and toxic tasks).

Snakemake rule `lfp_dpo`: input.model (base folder), input.pairs (preference table: prompt, chosen,
rejected); params: model (name), task, hyper (dict of lensflow.lfp.finetune.dpo.DPOHyper fields), seed (wins),
n_heldout (finetune.dpo_eval.n_prompts: prompts whose pairs are held out for lfp_dpo_eval)
-> output.model (tuned folder with lensflow_model.json), output.log (TSV, one row per step: step,
loss, rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, learning_rate),
output.meta (JSON: hyperparameters, timings, first/last step, the pair split). Uses CUDA when the job has a gpu.
The held-out pairs are split off before training takes its own (lensflow.lfp.finetune.dpo_eval.split_pairs);
the split's record goes into the tuned manifest (source.pairs) and output.meta (pairs.split).
"""

import json

from lensflow.core import io
from lensflow.core.io import atomic_path
from lensflow.core.runtime import pick_device, seed_everything, setup_logging
from lensflow.lfp.finetune.dpo import DPOHyper, train_dpo
from lensflow.lfp.finetune.dpo_eval import split_pairs


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    seed_everything(p.seed)
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    hyper = DPOHyper(**{**dict(p.hyper), "seed": p.seed})  # the rule's seed wins over hyper.seed
    pairs = io.read_table(sm.input.pairs, required=["prompt", "chosen", "rejected"])
    pairs_meta = io.read_metadata(sm.input.pairs)
    split = split_pairs(pairs, p.n_heldout, min_train=hyper.batch_size, seed=p.seed, task=p.task)
    record = {"seed": p.seed, **split.sizes}  # evaluation recomputes the split from it and checks it is the same
    log.info("DPO %s on %s: %d training pairs of %d (%s; the %d pairs of %d prompts held out), %s, device %s", p.model,
             p.task, len(split.train), len(pairs), "synthetic" if pairs_meta.get("synthetic") else "real",
             len(split.heldout), p.n_heldout, hyper, device)
    meta = train_dpo(sm.input.model, sm.output.model, split.train, hyper, device=device, log_path_tsv=sm.output.log,
                     name=f"{p.model}-dpo-{p.task}", task=p.task, extra_source={"pairs": record})
    meta["pairs"] = {"split": record, "path": str(sm.input.pairs), "synthetic": pairs_meta.get("synthetic", False),
                     "substitute_for": pairs_meta.get("substitute_for"), "judge": pairs_meta.get("judge")}
    with atomic_path(sm.output.meta) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, default=str))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
