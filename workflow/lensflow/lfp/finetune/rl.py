"""RL fine-tuning for the VADER task (LFP paper §3.1) with TRL's maintained on-policy trainers.

The paper trains with PPO in TRL 0.x. TRL >= 1.0 has no PPO; its on-policy trainers that take a
Python reward function are RLOO (the default here) and GRPO. Both sample `num_generations`
completions per prompt and use the other completions of the same prompt as the baseline
(leave-one-out mean for RLOO, group mean/std for GRPO) instead of PPO's learned value head.
The reward is exactly the paper's: eq. 3 on prompt + completion (rewards.make_vader_reward_fn).

Batch mapping. `batch_size` counts *prompts* per generation round; TRL counts completions, so
the round is batch_size * num_generations completions. `mini_batch_size` (prompts) splits a
round into batch_size / mini_batch_size optimizer steps, like PPO's mini-batches, and
`num_iterations` re-uses a round that many times (PPO's ppo_epochs). A "step" everywhere here
(max_steps, warmup_steps, TSV rows) is one optimizer step, TRL's global_step.

Prompts (prompts.split_prompts): the evaluation's held-out prompts are split off the review corpus
first, and training takes its prompts from what is left, so max_steps <= 0 (one epoch over the
prompts) can never eat the evaluation's share.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from transformers import TrainerCallback

from lensflow.core.config_checks import rl_train_prompts
from lensflow.core.defaults import hyper_defaults
from lensflow.core.io import clear_stale
from lensflow.core.models import MANIFEST, describe
from lensflow.core.runtime import nonfinite_loss_guard, seed_everything

from .rewards import make_vader_reward_fn

log = logging.getLogger("lensflow")

METHODS = ("rloo", "grpo")

# TSV column -> TRL log key. Reward columns are the VADER reward alone (TRL logs the KL penalty
# separately); on mini-batch steps that reuse a round's completions they are empty.
LOG_COLUMNS = {
    "epoch": "epoch",
    "reward_mean": "reward",  # mean eq.-3 reward of the round's completions
    "reward_std": "reward_std",
    "kl": "kl",  # mean per-token log pi_theta - log pi_ref over completion tokens
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "entropy": "entropy",  # mean per-token policy entropy (nats)
    "completion_length": "completions/mean_length",  # new tokens per completion
    "clipped_ratio": "completions/clipped_ratio",  # fraction that hit max_new_tokens (no EOS)
    "frac_reward_zero_std": "frac_reward_zero_std",  # prompts whose completions all scored the same
    "clip_ratio": "clip_ratio/region_mean",  # fraction of ratios outside [1 - eps, 1 + eps]
    "step_time": "step_time",  # seconds of this optimizer step (generation + update)
}
TSV_COLUMNS = ["step", *LOG_COLUMNS, "elapsed_s"]

DEVIATIONS = {
    "rloo": "PPO -> RLOO (TRL >= 1.0 has no PPO)",
    "grpo": "PPO -> GRPO (TRL >= 1.0 has no PPO)",
}
COMMON_DEVIATIONS = [
    "completion length: the paper draws a length in 8..19 new tokens per completion; TRL generates a batch with one "
    "generation config, so every completion runs min_new_tokens..max_new_tokens and stops early only at EOS",
    "baseline: num_generations completions per prompt with a leave-one-out (RLOO) or group (GRPO) baseline "
    "instead of PPO's value head",
    "KL: fixed coefficient beta (TRL 0.x PPO adapted it from init_kl_coef by default)",
]


_RL = hyper_defaults("rl")  # the schema's definitions/rl_hyper: the one owner of these defaults


@dataclass
class RLHyper:
    """Hyperparameters of one RL run. Steps are optimizer steps (module docstring). The defaults are
    the config schema's (definitions rl_hyper, which documents each field)."""

    learning_rate: float = _RL["learning_rate"]
    batch_size: int = _RL["batch_size"]  # prompts per generation round
    num_generations: int = _RL["num_generations"]  # completions per prompt (>= 2: the baseline needs the others)
    beta: float = _RL["beta"]  # KL coefficient
    max_steps: int = _RL["max_steps"]  # <= 0: one epoch over the prompts
    warmup_steps: int = _RL["warmup_steps"]
    max_grad_norm: float = _RL["max_grad_norm"]
    temperature: float = _RL["temperature"]
    top_k: int = _RL["top_k"]  # 0 = no top-k filtering (TRL's convention): pure sampling
    top_p: float = _RL["top_p"]
    min_new_tokens: int = _RL["min_new_tokens"]
    max_new_tokens: int = _RL["max_new_tokens"]
    seed: int = _RL["seed"]
    lr_scheduler_type: str = _RL["lr_scheduler_type"]
    mini_batch_size: int | None = _RL["mini_batch_size"]  # prompts per optimizer step; None = the whole round
    num_iterations: int = _RL["num_iterations"]  # optimizer passes over each round (PPO's ppo_epochs)

    @classmethod
    def from_dict(cls, d: dict) -> "RLHyper":
        """Build from a config dict; an unknown key is an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown RL hyperparameter(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


class TsvLogger(TrainerCallback):
    """One TSV row per optimizer step, flushed as written.

    Rows go to `<path>.partial`; `finish()` renames it to `path`, so a killed run never leaves a
    plausible final log.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.rows: list[dict] = []
        self._fh = None
        self._t0 = time.perf_counter()
        self._last_step = -1

    def on_train_begin(self, args, state, control, **kwargs):
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.partial, "w", encoding="utf-8")
        self._fh.write("\t".join(TSV_COLUMNS) + "\n")
        self._fh.flush()
        self._t0 = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        # The end-of-training summary (train_runtime, train_loss, ...) is not a step.
        if "train_runtime" in logs or state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        row = {"step": state.global_step, **{c: logs.get(k) for c, k in LOG_COLUMNS.items()},
               "elapsed_s": round(time.perf_counter() - self._t0, 3)}
        self.rows.append(row)
        self._fh.write("\t".join("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)
                                 for v in row.values()) + "\n")
        self._fh.flush()

    def finish(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self.partial.replace(self.path)


def train_prompt_count(h: RLHyper, n_prompts: int | None) -> int | None:
    """Training prompts a run asks for: n_prompts when set, else just enough for max_steps; None
    when max_steps <= 0 (one epoch over every prompt left after the held-out part)."""
    return rl_train_prompts(asdict(h), n_prompts)


def plan_steps(n_prompts: int, h: RLHyper) -> dict:
    """Batch layout in TRL's units and the optimizer-step count (max_steps <= 0: one epoch)."""
    mini = h.mini_batch_size or h.batch_size
    if h.batch_size % mini:
        raise ValueError(f"batch_size {h.batch_size} is not a multiple of mini_batch_size {mini}")
    rounds_per_epoch = n_prompts // h.batch_size
    if rounds_per_epoch == 0:
        raise ValueError(f"{n_prompts} prompts are fewer than one batch of {h.batch_size}")
    steps_per_round = (h.batch_size // mini) * h.num_iterations
    steps = h.max_steps if h.max_steps > 0 else rounds_per_epoch * steps_per_round
    return {
        "per_device_train_batch_size": mini * h.num_generations,  # completions per optimizer step
        "steps_per_generation": h.batch_size // mini,
        "max_steps": steps,
        "rounds": math.ceil(steps / steps_per_round),
        "epochs_over_prompts": steps / (rounds_per_epoch * steps_per_round),
    }


def _config(method: str, h: RLHyper, plan: dict, out: str, device: torch.device):
    """The TRL config; only what differs from TRL's defaults or matters to the paper is set."""
    from trl import GRPOConfig, RLOOConfig

    cpu = torch.device(device).type == "cpu"
    kwargs = dict(
        output_dir=out, seed=h.seed, learning_rate=h.learning_rate, lr_scheduler_type=h.lr_scheduler_type,
        warmup_steps=h.warmup_steps, max_grad_norm=h.max_grad_norm, max_steps=plan["max_steps"],
        per_device_train_batch_size=plan["per_device_train_batch_size"], gradient_accumulation_steps=1,
        steps_per_generation=plan["steps_per_generation"], num_iterations=h.num_iterations,
        num_generations=h.num_generations, beta=h.beta,
        temperature=h.temperature, top_k=h.top_k, top_p=h.top_p, max_completion_length=h.max_new_tokens,
        generation_kwargs={"min_new_tokens": h.min_new_tokens},
        # CPU: no mixed precision; GPU: bf16 autocast over fp32 master weights where supported.
        use_cpu=cpu, bf16=(not cpu) and torch.cuda.is_bf16_supported(), fp16=False,
        activation_checkpointing=False,  # recomputation costs time; these models fit in memory
        report_to="none", save_strategy="no", logging_steps=1, logging_nan_inf_filter=False, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return (RLOOConfig if method == "rloo" else GRPOConfig)(**kwargs)


def _save_atomic(model, tokenizer, manifest: dict, out_dir: Path) -> None:
    """save_pretrained into a temporary sibling folder, then rename it to out_dir."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(out_dir)  # a killed earlier build's folder
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        build = Path(tmp) / "model"
        model.save_pretrained(build)
        tokenizer.save_pretrained(build)
        (build / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        build.rename(out_dir)


def train_rl(model_dir, out_dir, prompts: list[str], lexicon: dict[str, float], method: str = "rloo",
             hyper: RLHyper | None = None, device="cpu", log_path_tsv=None, name: str | None = None,
             extra_source: dict | None = None) -> dict:
    """Fine-tune the model at `model_dir` on `prompts` with the VADER reward; save it to `out_dir`.

    Writes out_dir (model + tokenizer + lensflow_model.json, renamed into place when complete)
    and, if given, log_path_tsv (TSV_COLUMNS, one row per optimizer step). `extra_source` is
    merged into the manifest's `source` (e.g. how the prompts were drawn, for held-out eval).
    Returns run metadata: method, trainer, deviations, every hyperparameter, the TRL batch
    layout, reward at the first and last logged step, runtime.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import trl

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    h = hyper or RLHyper()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    plan = plan_steps(len(prompts), h)
    seed_everything(h.seed)
    base_manifest = json.loads((model_dir / MANIFEST).read_text()) if (model_dir / MANIFEST).is_file() else {}
    # fp32 master weights: the paper's lr-1e-6 updates vanish in bf16 weights.
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Paper eq. 3 scores prefix + completion together (include_prompt=True).
    reward_fn = make_vader_reward_fn(lexicon, include_prompt=True)
    dataset = Dataset.from_dict({"prompt": list(prompts)})
    tsv = TsvLogger(log_path_tsv) if log_path_tsv else None
    Trainer = trl.RLOOTrainer if method == "rloo" else trl.GRPOTrainer
    with tempfile.TemporaryDirectory(prefix="lensflow-rl-") as scratch:
        args = _config(method, h, plan, scratch, device)
        trainer = Trainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=dataset,
                          processing_class=tokenizer,
                          callbacks=[nonfinite_loss_guard(f"{method} {name or Path(out_dir).name}"), *([tsv] if tsv else [])])
        log.info("%s: %d prompts, %d optimizer steps (%d rounds of %d prompts x %d completions) on %s",
                 method, len(prompts), plan["max_steps"], plan["rounds"], h.batch_size, h.num_generations, device)
        t0 = time.perf_counter()
        result = trainer.train()
        runtime = time.perf_counter() - t0
        if tsv:
            tsv.finish()
        tuned = trainer.accelerator.unwrap_model(trainer.model).to("cpu")
        rows = tsv.rows if tsv else [r for r in trainer.state.log_history if "reward" in r]
    meta = {
        "method": method,
        "trainer": f"trl.{Trainer.__name__}",
        "trl_version": trl.__version__,
        "deviations": [DEVIATIONS[method], *COMMON_DEVIATIONS],
        "hyper": asdict(h),
        "trl_layout": {k: plan[k] for k in ("per_device_train_batch_size", "steps_per_generation")},
        # TRL defaults this run relied on (they change what the update is; worth a record).
        "trl_defaults": {k: getattr(args, k) for k in ("epsilon", "normalize_advantages", "loss_type", "scale_rewards",
                                                       "weight_decay", "adam_beta1", "adam_beta2") if hasattr(args, k)},
        "generation": {"do_sample": True, "temperature": h.temperature, "top_k": h.top_k, "top_p": h.top_p,
                       "min_new_tokens": h.min_new_tokens, "max_new_tokens": h.max_new_tokens},
        "optimizer": str(args.optim), "bf16": bool(args.bf16),
        "reward": "clip(sum VADER(token.lower()) / 5, -10, 10) over spaCy tokens of prompt + completion",
        "n_prompts": len(prompts), "steps": int(result.global_step), "rounds": plan["rounds"],
        "epochs_over_prompts": plan["epochs_over_prompts"], "train_runtime_s": round(runtime, 2),
        "device": str(device), "base": base_manifest.get("name", str(model_dir)),
    }
    rewards = [v for r in rows if (v := r.get("reward_mean", r.get("reward"))) is not None]
    k = max(1, min(5, len(rewards) // 2))  # one step's reward is noisy: also average a few at each end
    meta["reward_first_step"] = rewards[0] if rewards else None
    meta["reward_last_step"] = rewards[-1] if rewards else None
    meta["reward_start_mean"] = sum(rewards[:k]) / k if rewards else None  # mean of the first k steps
    meta["reward_end_mean"] = sum(rewards[-k:]) / k if rewards else None  # ... and of the last k
    meta["reward_window_steps"] = k
    source = {"source": "finetune", "base": meta["base"], "base_dir": str(model_dir), "method": method,
              "hyper": asdict(h), "dtype": "float32", "deviations": meta["deviations"], **(extra_source or {})}
    manifest = {"name": name or out_dir.name, "source": source, **describe(tuned)}
    _save_atomic(tuned, tokenizer, manifest, out_dir)
    log.info("%s done in %.0f s: reward (mean of %d steps) %s -> %s; saved %s", method, runtime, k,
             meta["reward_start_mean"], meta["reward_end_mean"], out_dir)
    return meta
