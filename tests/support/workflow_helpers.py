"""Running the real workflow from tests: the tiny config in a scratch directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "config" / "tiny.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, configfile: Path | None = TINY, timeout: int = 900):
    """Run snakemake on the repo's Snakefile in `workdir`; returns the CompletedProcess."""
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    if configfile:
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env)


def tiny_workdir(tmp: Path) -> Path:
    """A scratch directory with the tiny model folders the tiny config names (checkpoints included)."""
    from tiny_models import save_tiny

    save_tiny(tmp / "tiny-llama", "llama", seed=0)
    save_tiny(tmp / "tiny-llama" / "step0", "llama", seed=1)
    save_tiny(tmp / "tiny-llama" / "step1", "llama", seed=2)
    save_tiny(tmp / "tiny-llama-3", "llama", seed=3, n_layers=3)
    return tmp


def copy_config(tmp: Path, src: Path = TINY) -> Path:
    dst = tmp / src.name
    shutil.copy(src, dst)
    return dst
