"""Run a workflow script (workflow/scripts/<name>.py) outside Snakemake, on a stand-in `snakemake` object."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"


def load_script(name: str):
    """The script as a module (its `main(sm)` not yet called)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, sm) -> None:
    load_script(name).main(sm)
