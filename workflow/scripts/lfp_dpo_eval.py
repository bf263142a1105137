"""Base vs DPO-tuned policy on the held-out preference pairs: implicit reward margin and
log-likelihood preference, with bootstrap CIs (a check that DPO training worked, not a paper claim).

Snakemake rule `lfp_dpo_eval`:
  input.base, input.tuned (model folders), input.pairs (the task's preference table)
  params.hyper (the task's DPO hyperparameters: beta, max_length, max_prompt_length as in training),
  params.batch_size, params.n_boot, params.seed
  -> output.pairs (per held-out pair: pair_id, prompt, chosen, rejected, base/tuned chosen/rejected
     log-probabilities, implicit_margin, loglik_margin_base, loglik_margin_tuned),
     output.summary (tidy: measure, policy, value, ci_low, ci_high, n, interval; measures
     implicit_margin, implicit_accuracy, loglik_margin, loglik_accuracy; policies base, tuned,
     tuned - base).
Held-out pairs: those the training split off before taking its own, recomputed from the tuned
model's manifest and checked against it (lensflow.lfp.finetune.dpo_eval.heldout_pairs); the split's
record goes into both outputs' metadata (pairs). Uses CUDA when the job has a gpu.
"""

import json
from pathlib import Path

from lensflow.core import io, models
from lensflow.core.runtime import pick_device, setup_logging
from lensflow.lfp.finetune.dpo import DPOHyper
from lensflow.lfp.finetune.dpo_eval import add_margins, heldout_pairs, pair_logps, preference_summary


def main(sm):
    log = setup_logging(sm.log[0])
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    p = sm.params
    hyper = DPOHyper(**{**dict(p.hyper), "seed": p.seed})  # the training's own: same shaping of the pairs
    pairs = io.read_table(sm.input.pairs, required=["prompt", "chosen", "rejected"])
    tuned_manifest = json.loads((Path(sm.input.tuned) / models.MANIFEST).read_text())
    heldout, split = heldout_pairs(pairs, tuned_manifest, p.seed)

    base, tok, _ = models.load(sm.input.base, device=device, dtype="float32")
    tuned, _, _ = models.load(sm.input.tuned, device=device, dtype="float32")
    table, counts = pair_logps(tuned, base, tok, heldout, hyper, device=device, batch_size=p.batch_size,
                               is_chat=tuned_manifest.get("source", {}).get("is_chat"))
    table = add_margins(table, hyper.beta)
    summary = preference_summary(table, n_boot=p.n_boot, seed=p.seed)
    meta = {"pairs": split, "scoring": counts, "beta": hyper.beta, "max_length": hyper.max_length,
            "max_prompt_length": hyper.max_prompt_length, "n_boot": p.n_boot, "seed": p.seed,
            "tuned": tuned_manifest.get("name"), "base": str(sm.input.base),
            "logp": "sum of log pi(answer token | context) over the answer's tokens, TRL DPOTrainer's tokenization"}
    io.write_table(table, sm.output.pairs, meta)
    io.write_table(summary, sm.output.summary, meta)
    s = summary.set_index(["measure", "policy"])["value"]
    log.info("%s: %d held-out pairs scored; implicit margin %.3f, accuracy %.3f; log-likelihood accuracy base %.3f, "
             "tuned %.3f", tuned_manifest.get("name"), len(table), s["implicit_margin", "tuned"],
             s["implicit_accuracy", "tuned"], s["loglik_accuracy", "base"], s["loglik_accuracy", "tuned"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
