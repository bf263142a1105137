"""Run-time plumbing shared by every script: device choice, seeding, logging to the rule's log."""

from __future__ import annotations

import logging
import math
import random
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def pick_device(gpu: int | float | bool = 0, threads: int | None = None) -> torch.device:
    """CUDA when the job was given a GPU (resources: gpu) and CUDA exists, else CPU.

    threads: the job's Snakemake `threads`. torch otherwise starts one thread per core in every
    job, and two jobs side by side on 2 cores then run several times slower than one each.
    """
    import torch  # here, not at the top: analysis scripts use this module without torch

    if threads:
        torch.set_num_threads(int(threads))
    if gpu and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; CPU kernels are then deterministic run to run."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_logging(log_path: str | None) -> logging.Logger:
    """Log to the rule's `log:` file (and stderr) with timestamps; returns the 'lensflow' logger."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    log = logging.getLogger("lensflow")

    def log_uncaught(kind, value, tb):  # the rule's log then holds the error that failed it
        log.error("%s: %s", kind.__name__, value, exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught
    return log


def nonfinite_loss_guard(what: str):
    """A transformers TrainerCallback that stops training with a clear error at a NaN/inf loss.

    Trainers must set `logging_steps=1, logging_nan_inf_filter=False`, else transformers hides a
    NaN loss in the logs. The error propagates out of `trainer.train()`, before anything is saved.
    """
    from transformers import TrainerCallback

    class NonFiniteLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                raise FloatingPointError(f"{what}: loss is {loss} at step {state.global_step}; training diverged "
                                         "(learning rate? NaN weights or inputs?); nothing was saved")

    return NonFiniteLoss()


def export_pythonpath(folder: str) -> None:
    """Prepend `folder` to PYTHONPATH so every job Snakemake starts (locally or via SLURM) finds lensflow."""
    import os

    parts = [folder, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)


def model_job(sm):
    """The start of every script that runs a model: log to the rule's log, seed, pick the device
    (and thread count) from the job's resources, load `input.model`.

    Returns (log, device, model, tokenizer, manifest).
    """
    from . import models

    log = setup_logging(sm.log[0])
    seed_everything(sm.params.seed)
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    model, tok, manifest = models.load(sm.input.model, device=device)
    return log, device, model, tok, manifest
