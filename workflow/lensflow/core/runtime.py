"""Run-time plumbing shared by every script: device and precision choice, seeding, logging to the rule's log."""

from __future__ import annotations

import logging
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .machine import NATIVE_BF16_CPU_FLAGS, parse_cpuinfo, read_file
from .usage import log_usage_at_exit

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
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if gpu and cuda else "cpu")
    # one line per job, read by tests/gpu_check.py to prove GPU jobs ran on the GPU
    logging.getLogger("lensflow").info("device: %s (job gpu=%s, threads=%d, cuda available=%s)", device.type,
                                       gpu, torch.get_num_threads(), cuda)
    return device


CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | Path = CPUINFO) -> set[str]:
    """The CPU's feature flags as the kernel reports them (x86 `flags`, ARM `Features` in /proc/cpuinfo).

    Without a readable /proc/cpuinfo (macOS, Windows), torch's own cpuinfo probe
    (`torch.cpu.get_capabilities()`, same names for the flags used here) answers.
    """
    flags = parse_cpuinfo(read_file(str(cpuinfo)) or "")["flags"]  # one parser: lensflow.core.machine's
    if flags:
        return flags
    import torch

    get = getattr(torch.cpu, "get_capabilities", None)
    return {k for k, v in (get() if get else {}).items() if v is True}


def cpu_model(cpuinfo: str | Path = CPUINFO) -> str:
    """The CPU's model name (/proc/cpuinfo), else platform.processor(), else 'unknown CPU'."""
    import platform

    return parse_cpuinfo(read_file(str(cpuinfo)) or "")["model"] or platform.processor() or "unknown CPU"


@dataclass(frozen=True)
class Precision:
    """The forward pass's precision: bf16 autocast or fp32, the config setting it came from, and why."""

    bf16_autocast: bool
    setting: bool | str
    reason: str  # e.g. "auto: cpu (AMD EPYC) without avx512_bf16/amx_bf16 -> fp32"

    def meta(self) -> dict:
        """What an output's metadata records."""
        return {"bf16_autocast": self.bf16_autocast, "bf16_autocast_setting": self.setting,
                "bf16_autocast_reason": self.reason}


def _native_bf16(device) -> tuple[bool, str]:
    """(native bf16 on `device`?, what was seen). CUDA: compute capability >= 8 (ROCm: always),
    not the emulation `torch.cuda.is_bf16_supported()` also accepts; CPU: avx512_bf16 or amx_bf16."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        try:
            name = torch.cuda.get_device_name(device)
        except Exception:  # noqa: BLE001 (a name only decorates the reason)
            name = "unknown GPU"
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"cuda ({name}) with native bf16"
        return False, f"cuda ({name}) without native bf16"
    if device.type == "cpu":
        found = [f for f in NATIVE_BF16_CPU_FLAGS if f in cpu_flags()]
        if found:
            return True, f"cpu ({cpu_model()}) with {'/'.join(found)}"
        return False, f"cpu ({cpu_model()}) without {'/'.join(NATIVE_BF16_CPU_FLAGS)}"
    return False, f"{device.type}: no native-bf16 rule for this device"


def resolve_bf16_autocast(setting: bool | str, device) -> Precision:
    """The one rule for every forward pass that may autocast (`activations.bf16_autocast`).

    `auto`: bf16 autocast only where bf16 is native, else fp32 (a CPU without it emulates bf16 and
    runs several times slower: issue 13). `true` / `false` force it either way.
    """
    if setting == "auto" and isinstance(setting, str):
        native, seen = _native_bf16(device)
        return Precision(native, "auto", f"auto: {seen} -> {'bf16' if native else 'fp32'}")
    if isinstance(setting, bool) or type(setting).__name__ == "bool_":  # numpy bools too
        on = bool(setting)
        reason = f"{str(on).lower()}: forced -> {'bf16' if on else 'fp32'}"
        if on:
            native, seen = _native_bf16(device)
            if not native:
                reason += f" (not native here, emulated and slow: {seen})"
        return Precision(on, on, reason)
    raise ValueError(f"activations.bf16_autocast must be true, false or auto, got {setting!r}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; CPU kernels are then deterministic run to run."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


QUIET_LIBRARIES = ("fontTools",)  # matplotlib's PDF font subsetting logs every glyph at INFO


def setup_logging(log_path: str | None) -> logging.Logger:
    """Log to the rule's `log:` file (and stderr) with timestamps; returns the 'lensflow' logger."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    log = logging.getLogger("lensflow")
    for chatty in QUIET_LIBRARIES:  # their INFO lines would bury the job's own
        logging.getLogger(chatty).setLevel(logging.WARNING)

    def log_uncaught(kind, value, tb):  # the rule's log then holds the error that failed it
        log.error("%s: %s", kind.__name__, value, exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught
    log_usage_at_exit(log_path)  # exact CPU time and peak memory for the per-job table (lensflow.core.usage)
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
