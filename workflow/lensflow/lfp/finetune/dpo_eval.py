"""DPO on held-out preference pairs: the split fixed before training, and base vs tuned on it.

Split (split_pairs). Pairs are grouped by prompt (whitespace-normalised text), so no prompt has
pairs on both sides. The distinct prompts, in order of first appearance in the table, are put in
the order of `np.random.default_rng(seed).permutation(n_prompts)`; the first n_heldout prompts are
held out with all their pairs, and training (rule lfp_dpo) takes every pair of the other prompts.
The held-out part is fixed first: it does not depend on how many pairs training then uses. The
sizes and the content hash of each part (lensflow.core.splits.content_sha256 over prompt,
chosen, rejected of each pair in table order) go into the tuned model's manifest (source.pairs)
and the training metadata; the evaluation (heldout_pairs) recomputes the split from that record
and stops when it differs, as RL's held-out prompts do (lensflow.lfp.finetune.rl_eval).

Evaluation (pair_logps, preference_summary). Per held-out pair, log pi(y|x) summed over the
answer's tokens for chosen and rejected, under the tuned policy and the base (= DPO reference),
computed by TRL's DPOTrainer itself (its tokenization, max_length truncation, EOS and chat
template; DPOTrainer.compute_ref_log_probs on each model) on the pairs shaped as training shaped
them (dpo._dataset: the same prompt shortening). Then
  implicit reward margin  m = beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))]
  (0 for the base policy by definition: it is the reference), accuracy m > 0 (TRL's rewards/accuracies);
  log-likelihood preference  l = log pi(y_w|x) - log pi(y_l|x), accuracy l > 0, for base and tuned,
and tuned - base, each mean with a percentile bootstrap CI over pairs (one resample set for every
measure: lensflow.core.stats.bootstrap_mean with one seed, so differences are paired).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lensflow.core.config_checks import dpo_pair_shortfall
from lensflow.core.splits import content_sha256, recorded_differences
from lensflow.core.stats import bootstrap_mean

from .dpo import DPOHyper, _dataset, chat_format

PAIR_COLUMNS = ["prompt", "chosen", "rejected"]
LOGP_COLUMNS = ["base_chosen_logp", "base_rejected_logp", "tuned_chosen_logp", "tuned_rejected_logp"]
SUMMARY_COLUMNS = ["measure", "policy", "value", "ci_low", "ci_high", "n", "interval"]


@dataclass(frozen=True)
class PairSplit:
    """A DPO task's pairs split before training: `heldout` (with pair_id, the row in the table) only
    for evaluation, `train` for DPO. `sizes` is the record the training and evaluation outputs carry."""

    heldout: pd.DataFrame
    train: pd.DataFrame
    sizes: dict


def pairs_sha256(pairs: pd.DataFrame) -> str:
    """Content hash of preference pairs: prompt, chosen, rejected of each pair, in order."""
    return content_sha256(str(x) for row in pairs[PAIR_COLUMNS].itertuples(index=False) for x in row)


def prompt_key(prompt) -> str:
    return " ".join(str(prompt).split())


def split_pairs(pairs: pd.DataFrame, n_heldout: int, *, min_train: int, seed: int, task: str) -> PairSplit:
    """Held-out and training pairs of a DPO task (module docstring). Raises ValueError naming the
    config keys when the table has too few prompts for n_heldout held-out prompts and min_train
    training pairs (one batch)."""
    missing = set(PAIR_COLUMNS) - set(pairs.columns)
    if missing:
        raise ValueError(f"split_pairs: the preference table lacks {sorted(missing)}")
    keys = pairs["prompt"].map(prompt_key)  # [n_pairs]
    unique = list(dict.fromkeys(keys))
    order = np.random.default_rng(seed).permutation(len(unique))  # [n_prompts] prompt index at each position
    held = {unique[i] for i in order[:n_heldout]}
    is_held = keys.isin(held).to_numpy()  # [n_pairs]
    n_train = int((~is_held).sum())
    if len(unique) < n_heldout or n_train < min_train:
        raise ValueError(dpo_pair_shortfall(task, f"the table has {len(pairs)} pairs of {len(unique)} distinct prompts "
                                                  f"({n_train} pairs left for training)", n_heldout, min_train))
    heldout = pairs.loc[is_held, PAIR_COLUMNS].reset_index(drop=True)
    heldout.insert(0, "pair_id", np.flatnonzero(is_held))
    train = pairs.loc[~is_held].reset_index(drop=True)
    sizes = {"n_pairs": len(pairs), "n_prompts": len(unique), "n_heldout_prompts": n_heldout,
             "n_heldout": len(heldout), "n_train": n_train, "n_train_prompts": len(unique) - n_heldout,
             "heldout_sha256": pairs_sha256(heldout), "train_sha256": pairs_sha256(train)}
    return PairSplit(heldout, train, sizes)


def heldout_pairs(pairs: pd.DataFrame, tuned_manifest: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """The held-out pairs the tuned model's training split off, and the split's record.

    Recomputed with split_pairs from the manifest's record (source.pairs, written by the lfp_dpo
    script); a manifest without it, another seed, or another split (hashes, sizes: the preference
    table changed since training) is an error: the pairs would not be the ones training left alone.
    """
    source = tuned_manifest.get("source", {})
    rec, task, name = source.get("pairs") or {}, source.get("task", "<task>"), tuned_manifest.get("name")
    if "heldout_sha256" not in rec:
        raise ValueError(f"tuned model {name!r} records no held-out pair split (source.pairs in its "
                         f"lensflow_model.json); rerun lfp_dpo for it")
    if rec.get("seed") != seed:
        raise ValueError(f"tuned model {name!r} split its pairs with seed {rec.get('seed')}, not {seed}; rerun lfp_dpo")
    split = split_pairs(pairs, rec["n_heldout_prompts"], min_train=0, seed=seed, task=task)
    differs = recorded_differences(rec, split.sizes, ("heldout_sha256", "train_sha256", "n_heldout", "n_train"))
    if differs:
        raise ValueError(f"the preference table gives another pair split than training of {name!r} saw "
                         f"(recorded, now): {differs}; rerun lfp_dpo")
    return split.heldout, {**split.sizes, "seed": seed}


def pair_logps(tuned, base, tokenizer, heldout: pd.DataFrame, hyper: DPOHyper, device="cpu", batch_size: int = 8,
               is_chat: bool | None = None) -> tuple[pd.DataFrame, dict]:
    """(per-pair table, counts): pair_id, prompt, chosen, rejected + LOGP_COLUMNS for the held-out
    pairs TRL keeps, and how many it left out (module docstring; same shaping as training).

    tuned, base: causal LMs (base = the DPO reference); tokenizer: the base's (the tuned model
    keeps it). hyper: the task's DPOHyper (max_length, max_prompt_length). is_chat None: as
    training chose (dpo.chat_format). Full precision, no gradients, pairs in table order. Pairs
    training would drop (prompt too long) are dropped here too and counted; none left: an empty table.
    """
    from torch.utils.data import DataLoader
    from trl import DPOConfig, DPOTrainer

    device = torch.device(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    is_chat = chat_format(tokenizer) if is_chat is None else is_chat
    empty = heldout.iloc[:0].assign(**{c: np.zeros(0) for c in LOGP_COLUMNS})
    try:
        dataset, counts = _dataset(heldout, tokenizer, is_chat, hyper.max_prompt_length, pair_ids=True)
    except ValueError:  # every held-out prompt's last user turn is longer than max_prompt_length
        return empty, {"n_pairs_dropped": len(heldout), "n_prompts_shortened": 0, "n_pairs_truncated_away": 0,
                       "n_scored": 0, "is_chat": is_chat}
    with tempfile.TemporaryDirectory(prefix="lensflow-dpo-eval-") as tmp:
        args = DPOConfig(output_dir=tmp, beta=hyper.beta, max_length=hyper.max_length, per_device_eval_batch_size=batch_size,
                         use_cpu=device.type == "cpu", bf16=False, fp16=False, report_to="none", disable_tqdm=True,
                         dataloader_num_workers=0, seed=hyper.seed)
        trainer = DPOTrainer(model=tuned.eval(), ref_model=base.eval(), args=args, train_dataset=dataset,
                             processing_class=tokenizer)
    ds = trainer.train_dataset  # tokenized as training tokenizes; pairs whose prompt fills max_length dropped
    loader = DataLoader(ds.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]), batch_size=batch_size,
                        collate_fn=trainer.data_collator, shuffle=False)
    out = {c: [] for c in LOGP_COLUMNS}
    for batch in loader:  # input_ids [2b, T]: b chosen rows, then b rejected rows
        batch = {k: v.to(trainer.accelerator.device) for k, v in batch.items()}
        for policy, model in (("base", trainer.ref_model), ("tuned", trainer.model)):
            chosen, rejected = trainer.compute_ref_log_probs(model, batch)  # [b] each, summed over answer tokens
            out[f"{policy}_chosen_logp"].append(chosen.float().cpu())
            out[f"{policy}_rejected_logp"].append(rejected.float().cpu())
    if not len(ds):
        table = empty
    else:
        kept = heldout.iloc[ds["pair_id"]].reset_index(drop=True)  # ds's pair_id: row position in `heldout`
        table = kept.assign(**{c: torch.cat(v).double().numpy() for c, v in out.items()})
    counts = {**counts, "n_pairs_truncated_away": len(dataset) - len(ds), "n_scored": len(table), "is_chat": is_chat}
    return table, counts


def add_margins(table: pd.DataFrame, beta: float) -> pd.DataFrame:
    """Per-pair implicit reward margin (tuned; 0 for base) and log-likelihood preferences."""
    t = table
    return t.assign(
        implicit_margin=beta * ((t.tuned_chosen_logp - t.base_chosen_logp) - (t.tuned_rejected_logp - t.base_rejected_logp)),
        loglik_margin_base=t.base_chosen_logp - t.base_rejected_logp,
        loglik_margin_tuned=t.tuned_chosen_logp - t.tuned_rejected_logp,
    )


def preference_summary(table: pd.DataFrame, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Tidy SUMMARY_COLUMNS rows from add_margins' table: per measure (implicit_margin,
    implicit_accuracy, loglik_margin, loglik_accuracy) the base, tuned and tuned - base policy.
    The base's implicit reward is 0 by definition (interval "by definition"); everything else is a
    mean over pairs with a percentile bootstrap CI (paired: one resample set for all)."""
    m = table["implicit_margin"].to_numpy(float)  # [n]
    lb, lt = (table[f"loglik_margin_{p}"].to_numpy(float) for p in ("base", "tuned"))  # [n] each
    per_pair = {
        "implicit_margin": (np.zeros_like(m), m),
        "implicit_accuracy": (np.zeros_like(m), (m > 0).astype(float)),
        "loglik_margin": (lb, lt),
        "loglik_accuracy": ((lb > 0).astype(float), (lt > 0).astype(float)),
    }
    rows, interval = [], f"percentile bootstrap over pairs ({n_boot}, paired)"
    for measure, (base, tuned) in per_pair.items():
        for policy, values in (("base", base), ("tuned", tuned), ("tuned - base", tuned - base)):
            r = bootstrap_mean(values, n_boot=n_boot, ci=ci, seed=seed)
            fixed = policy == "base" and measure.startswith("implicit")
            rows.append({"measure": measure, "policy": policy, "value": r.mean, "ci_low": 0.0 if fixed else r.ci_low,
                         "ci_high": 0.0 if fixed else r.ci_high, "n": r.n,
                         "interval": "by definition (the base is the reference)" if fixed else interval})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
