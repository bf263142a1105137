"""DPO fine-tuning for the LFP paper's HH and toxic tasks (§3.1), with TRL's DPOTrainer.

Paper: beta 0.1, AdamW (eps 1e-8), lr 3e-5 (toxic 5e-5), batch 8, max_length 256,
max_prompt_length 128, warmup 150 (toxic 30), 5000 steps (toxic 250); the rest TRL defaults
(linear decay, max grad norm 1, sigmoid loss). The reference model is a frozen copy of the base.

Choices where TRL 1.x differs from the TRL the paper used:
- TRL >= 1.0 has no `max_prompt_length`; we shorten each prompt ourselves, keeping its end (the
  old default keeps the LAST max_prompt_length tokens, i.e. the latest turn), but in whole turns:
  the prompt is split into turns first (HH-RLHF transcripts "\\n\\nHuman: ... \\n\\nAssistant:"),
  then turns are dropped from the front until the rest holds <= max_prompt_length tokens (counted
  without the chat template's tokens) and opens with a user turn. A cut inside a turn would leave
  two user turns in a row, which Gemma's template rejects. A pair whose last user turn alone is
  too long is dropped; the counts are in the run's metadata (`prompt_truncation`).
  `max_length` (prompt + answer, keep_start) is TRL's own.
- Chat models get conversational data (prompt = user/assistant turns, answer = one assistant
  turn) so TRL renders the chat template. Other models get plain text (a shortened HH prompt
  written back as an HH transcript); TRL appends EOS to each answer.
- Gradient checkpointing off by default (TRL turns it on; the small models do not need it);
  `gradient_checkpointing: true` (hyper) turns it on -- same gradients, ~1/3 more compute,
  activation memory of one block instead of all: what lets full fine-tuning of Gemma-2b-it (fp32
  weights, AdamW, a reference model) fit an 80 GB GPU (workflow/scripts/capacity_plan.py).
  Smaller still, not offered here: 8-bit AdamW (`optim` adamw_torch_8bit / paged_adamw_8bit need
  torchao / bitsandbytes, not in envs/torch.yaml) and LoRA (peft; it also changes which weights
  move, hence the layer divergence the SAE layers are chosen by). fp32 on CPU; bf16 mixed
  precision on a CUDA GPU that supports it unless `bf16` says otherwise.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from lensflow.core import models
from lensflow.core.data import to_messages
from lensflow.core.defaults import hyper_defaults
from lensflow.core.io import clear_stale
from lensflow.core.runtime import nonfinite_loss_guard

log = logging.getLogger("lensflow")

LOG_COLUMNS = ["step", "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "learning_rate"]


_DPO = hyper_defaults("dpo")  # the schema's definitions/dpo_hyper: the one owner of these defaults


@dataclass
class DPOHyper:
    """Hyperparameters of one DPO run; the defaults are the config schema's (definitions dpo_hyper,
    which documents each field)."""

    beta: float = _DPO["beta"]
    learning_rate: float = _DPO["learning_rate"]
    max_steps: int = _DPO["max_steps"]
    batch_size: int = _DPO["batch_size"]
    max_length: int = _DPO["max_length"]
    max_prompt_length: int = _DPO["max_prompt_length"]
    warmup_steps: int = _DPO["warmup_steps"]
    gradient_accumulation_steps: int = _DPO["gradient_accumulation_steps"]
    seed: int = _DPO["seed"]
    bf16: bool | None = _DPO["bf16"]  # None: bf16 mixed precision on a CUDA GPU that supports it, else fp32
    gradient_checkpointing: bool = _DPO["gradient_checkpointing"]  # recompute in the backward (module docstring)


def fit_prompt(tokenizer, msgs: list[dict], max_tokens: int) -> list[dict] | None:
    """The latest whole turns of `msgs` that open with a user turn and hold <= max_tokens tokens
    of content (template excluded); None when the last user turn alone is longer."""
    sizes = [len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in msgs]
    for start in range(len(msgs)):
        if msgs[start]["role"] == "user" and sum(sizes[start:]) <= max_tokens:
            return msgs[start:]
    return None


def chat_format(tokenizer) -> bool:
    """Whether DPO data for this tokenizer is conversational: it has a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def _hh_transcript(msgs: list[dict]) -> str:
    """Turns written back as an HH-RLHF prompt, ending where the assistant's answer goes."""
    speaker = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{speaker[m['role']]}: {m['content']}" for m in msgs) + "\n\nAssistant:"


def _dataset(pairs: pd.DataFrame, tokenizer, is_chat: bool, max_prompt_length: int, pair_ids: bool = False):
    """(datasets.Dataset in TRL's conversational (chat) or standard (plain text) preference
    format, counts {n_pairs_dropped, n_prompts_shortened}); see the module docstring.
    pair_ids: add a column pair_id (the pair's row position in `pairs`) to follow kept pairs."""
    import datasets

    rows, dropped, shortened = [], 0, 0
    cols = (pairs[c].astype(str) for c in ("prompt", "chosen", "rejected"))
    for i, (p, c, r) in enumerate(zip(*cols)):
        msgs = to_messages(p)
        kept = fit_prompt(tokenizer, msgs, max_prompt_length)
        if kept is None:
            dropped += 1
            continue
        shortened += len(kept) < len(msgs)
        rows.append((kept if is_chat else (p if len(kept) == len(msgs) else _hh_transcript(kept)), c, r, i))
    if not rows:
        raise ValueError(f"DPO: every one of {len(pairs)} prompts has a last user turn longer than "
                         f"max_prompt_length={max_prompt_length} tokens")
    prompts, chosen, rejected, ids = (list(col) for col in zip(*rows))
    counts = {"n_pairs_dropped": dropped, "n_prompts_shortened": shortened}
    extra = {"pair_id": ids} if pair_ids else {}
    if is_chat:
        return datasets.Dataset.from_dict({
            "prompt": prompts,
            "chosen": [[{"role": "assistant", "content": a.strip()}] for a in chosen],
            "rejected": [[{"role": "assistant", "content": a.strip()}] for a in rejected], **extra,
        }), counts

    # Plain text is concatenated as prompt + answer: make sure a word boundary separates them.
    def join(p, a):
        return a if (not p or p[-1].isspace() or a[:1].isspace()) else " " + a

    return datasets.Dataset.from_dict({"prompt": prompts, "chosen": [join(p, a) for p, a in zip(prompts, chosen)],
                                       "rejected": [join(p, a) for p, a in zip(prompts, rejected)], **extra}), counts


def _step_logger(path: Path):
    """A TrainerCallback writing one TSV row per logged step to `<path>.partial`."""
    from transformers import TrainerCallback

    class StepTSV(TrainerCallback):
        def __init__(self):
            self.partial = path.with_name(path.name + ".partial")
            self.rows: list[dict] = []

        def on_train_begin(self, args, state, control, **kw):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.partial, "w", newline="") as fh:
                csv.writer(fh, delimiter="\t").writerow(LOG_COLUMNS)

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs:  # the end-of-training summary has no loss
                return
            row = {"step": state.global_step, **{c: logs.get(c, float("nan")) for c in LOG_COLUMNS[1:]}}
            self.rows.append(row)
            with open(self.partial, "a", newline="") as fh:  # appended per step: a killed run still shows progress
                csv.writer(fh, delimiter="\t").writerow([row[c] for c in LOG_COLUMNS])

    return StepTSV()


def train_dpo(model_dir, out_dir, pairs: pd.DataFrame, hyper: DPOHyper, device="cpu",
              log_path_tsv=None, is_chat: bool | None = None, name: str | None = None,
              task: str | None = None, extra_source: dict | None = None) -> dict:
    """DPO-tune the model in `model_dir` on `pairs` (prompt, chosen, rejected); save it to `out_dir`.

    is_chat None: chat format iff the tokenizer has a chat template (chat_format). extra_source: more
    keys for the manifest's `source` (the held-out split's record, dpo_eval). Writes the per-step TSV
    (LOG_COLUMNS) to `log_path_tsv` and the tuned model + tokenizer + lensflow_model.json to
    `out_dir`, both only when training finished. Returns the run's metadata.
    """
    import transformers
    import trl
    from trl import DPOConfig, DPOTrainer

    missing = {"prompt", "chosen", "rejected"} - set(pairs.columns)
    if missing or pairs.empty:
        raise ValueError(f"train_dpo: preference table is empty or lacks {sorted(missing)}")
    device = torch.device(device)
    out_dir = Path(out_dir)
    model, tok, base_manifest = models.load(model_dir, device="cpu", dtype="float32")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    is_chat = chat_format(tok) if is_chat is None else is_chat
    bf16 = hyper.bf16 if hyper.bf16 is not None else (device.type == "cuda" and torch.cuda.is_bf16_supported())
    ref = copy.deepcopy(model).eval().requires_grad_(False)  # frozen copy of the base = the DPO reference
    model.train()
    dataset, truncation = _dataset(pairs, tok, is_chat, hyper.max_prompt_length)
    if truncation["n_pairs_dropped"]:
        log.warning("DPO %s: %d of %d pairs dropped, their last user turn alone is longer than %d tokens",
                    name or out_dir.name, truncation["n_pairs_dropped"], len(pairs), hyper.max_prompt_length)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(out_dir)  # a killed earlier run's folder (trainer state, half-saved model)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        tmp = Path(tmp)
        args = DPOConfig(
            output_dir=str(tmp / "trainer"), beta=hyper.beta, learning_rate=hyper.learning_rate,
            max_steps=hyper.max_steps, per_device_train_batch_size=hyper.batch_size,
            gradient_accumulation_steps=hyper.gradient_accumulation_steps, max_length=hyper.max_length,
            warmup_steps=hyper.warmup_steps, seed=hyper.seed, data_seed=hyper.seed,
            use_cpu=device.type == "cpu", bf16=bf16, fp16=False,
            activation_checkpointing=hyper.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
            logging_steps=1, logging_nan_inf_filter=False, save_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0,
        )
        steps = _step_logger(Path(log_path_tsv)) if log_path_tsv else None
        trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=dataset, processing_class=tok,
                             callbacks=[nonfinite_loss_guard(f"DPO {name or out_dir.name}"), *([steps] if steps else [])])
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0

        tuned = trainer.model.to("cpu").float()
        build = tmp / "model"
        tuned.save_pretrained(build)
        tok.save_pretrained(build)
        hyper_d = asdict(hyper) | {"bf16": bf16}
        manifest = {
            "name": name or out_dir.name,
            "source": {"source": "finetune", "base": base_manifest.get("name", str(model_dir)),
                       "base_dir": str(model_dir), "method": "dpo", "task": task, "hyper": hyper_d,
                       "dtype": "float32", "is_chat": is_chat, **(extra_source or {})},
            **models.describe(tuned),
        }
        (build / models.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        build.rename(out_dir)
    if steps:
        os.replace(steps.partial, log_path_tsv)

    rows = steps.rows if steps else []
    meta = {
        "name": manifest["name"], "base": manifest["source"]["base"], "method": "dpo", "task": task,
        "hyper": hyper_d, "is_chat": is_chat, "device": str(device), "n_pairs": len(pairs),
        "n_train_examples": len(trainer.train_dataset), "steps": int(result.global_step),
        "train_seconds": round(seconds, 2), "seconds_per_step": round(seconds / max(result.global_step, 1), 3),
        "first_step": rows[0] if rows else None, "last_step": rows[-1] if rows else None,
        "prompt_truncation": {"rule": "whole turns dropped from the front to <= max_prompt_length tokens "
                                      "(template excluded); a pair whose last user turn is longer is dropped",
                              "max_prompt_length": hyper.max_prompt_length, **truncation},
        "reference_model": "frozen copy of the base", "gradient_checkpointing": hyper.gradient_checkpointing,
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
    }
    log.info("DPO %s: %d steps in %.1f s; last step %s", meta["name"], meta["steps"], seconds, meta["last_step"])
    return meta
