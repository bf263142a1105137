"""Rehearse config/paper.yaml against a local stand-in of the hub.

    python tests/rehearsal/rehearse.py WORKDIR [snakemake args ...]

builds the stand-in hub cache and data repos in WORKDIR (fake_hub.py), starts the fake
OpenAI-compatible endpoint (fake_openai.py), and runs
`snakemake --configfile config/paper.yaml <overlay>` there, offline (HF_HUB_OFFLINE=1,
HF_DATASETS_OFFLINE=1, HF_HUB_CACHE=WORKDIR/hub). Extra arguments go to snakemake (default
`--cores 2`). tests/rehearsal/test_rehearsal.py runs it in CI; tests/gpu_check.sh on a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PAPER = ROOT / "config" / "paper.yaml"
OVERLAY = HERE / "overlay.yaml"


def paper_config() -> dict:
    return yaml.safe_load(PAPER.read_text())


def merged(base: dict, over: dict) -> dict:
    """The config Snakemake builds from `--configfile base over` (its own deep merge), as a new dict."""
    import copy

    from snakemake.utils import update_config

    out = copy.deepcopy(base)
    update_config(out, over)
    return out


def prepare(work: Path, endpoint: str) -> Path:
    """Stand-in hub + data in `work`, the overlay with the endpoint filled in; returns the overlay."""
    sys.path.insert(0, str(HERE))
    import fake_hub

    config = merged(paper_config(), yaml.safe_load(OVERLAY.read_text()))
    if not (work / "hub").is_dir():
        fake_hub.build(work, work / "hub", config)
    overlay = work / "overlay.yaml"
    overlay.write_text(OVERLAY.read_text().replace("{endpoint}", endpoint))
    return overlay


def environment(work: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_CACHE": str(work / "hub"),
            "OPENAI_API_KEY": "sk-rehearsal", "TOKENIZERS_PARALLELISM": "false"}


def snakemake_cmd(work: Path, overlay: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(PAPER), str(overlay), *args]


def main() -> int:
    import fake_openai

    work = Path(sys.argv[1]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    args = sys.argv[2:] or ["--cores", "2"]
    with fake_openai.serve() as endpoint:
        overlay = prepare(work, endpoint)
        return subprocess.run(snakemake_cmd(work, overlay, *args), env=environment(work)).returncode


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
