"""The defaults that validating a config does not fill in, each applied from its one owner.

Validation (lensflow.core.config) fills in the schema's `default:` values. Two kinds of default it
cannot fill in:
- A fine-tuning task's trainer hyperparameters (finetune.tasks.<name>.hyper): their defaults depend
  on the task's method, so they sit in the schema's definitions `rl_hyper` (rloo, grpo) and
  `dpo_hyper` (dpo), and the task's hyper stays as written (the rules pass it as a param). The
  trainers' dataclasses (lensflow.lfp.finetune.rl.RLHyper, lensflow.lfp.finetune.dpo.DPOHyper) take
  their field defaults from hyper_defaults; the config checks and the capacity plan read a task's
  hyperparameters with task_hyper.
- "Every task unless lfp.<section>.tasks" (lfp_section_tasks): the schema cannot name every task.

Only yaml is imported: the trainers import this in the torch environment, and every Snakemake parse
does too.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
HYPER = {"rl": "rl_hyper", "rloo": "rl_hyper", "grpo": "rl_hyper", "dpo": "dpo_hyper"}  # method -> definition


@functools.lru_cache(maxsize=1)
def _parsed_schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def load_schema() -> dict:
    """The config schema, a copy the caller may change. Parsed once per process (~45 ms): every
    Snakemake parse validates the config, checks figure options and reads trainer defaults."""
    return copy.deepcopy(_parsed_schema())


@functools.lru_cache(maxsize=None)
def _hyper_defaults(definition: str) -> tuple:
    props = _parsed_schema()["definitions"][definition]["properties"]
    return tuple((key, spec["default"]) for key, spec in props.items())


def hyper_defaults(method: str) -> dict:
    """Trainer hyperparameter -> default for a task of `method` (rloo, grpo or dpo; `rl` for either
    RL method): the schema's definition rl_hyper or dpo_hyper, every key of the trainer's dataclass."""
    return dict(_hyper_defaults(HYPER[method]))


def task_hyper(task: dict) -> dict:
    """A validated finetune.tasks entry's hyperparameters: its `hyper` over its method's defaults."""
    return {**hyper_defaults(task["method"]), **task["hyper"]}


def lfp_section_tasks(cfg: dict, section: str) -> list:
    """The tasks an optional LFP part runs for (lfp.<section>.tasks, e.g. ablations, base_control) in a
    validated config; unset: every fine-tuning task. The one place that default is applied."""
    return cfg["lfp"][section].get("tasks", list(cfg["finetune"]["tasks"]))
