"""The capacity plan (issue 15, item 3): model sizes without weights, and paper.yaml's jobs against it.

For paper.yaml, planned under profiles/slurm (the resources a cluster job gets): every job's declared
mem_mb covers the plan's host-memory estimate, every GPU job fits the 80 GB GPU the README asks for,
every GPU job has an estimate, and the whole reproduction fits 2 TB of disk and 64 GB of host memory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from lensflow.core import capacity
from lensflow.core.config import load_config
from lensflow.core.model_memory import HUB_PARAMS_B
from lensflow.core.model_sizes import KNOWN_MODELS, CapacityError, jobs_of_dry_run, model_dims
from workflow_helpers import ROOT, SNAKEMAKE

PAPER = ROOT / "config" / "paper.yaml"
ASKS = re.search(r"Paper scale asks for one (\d+) GB GPU .*?, (\d+) GB of host memory for the largest job and (\d+) TB "
                 r"of disk", (ROOT / "README.md").read_text(), re.S)
README_GPU_GB, HOST_GB, DISK_TB = (int(x) for x in ASKS.groups())  # what the README asks for: 80, 64, 2


def hub_params_b() -> dict:
    """lensflow.core.model_memory's HUB_PARAMS_B (what the workflow sizes mem_mb by)."""
    return HUB_PARAMS_B


@pytest.mark.parametrize("hub_id", sorted(k for k in KNOWN_MODELS if "/" in k))
def test_known_models_have_the_parameters_the_workflow_sizes_memory_by(hub_id):
    d = model_dims(hub_id, {"id": hub_id})
    assert d.params / 1e9 == pytest.approx(hub_params_b()[hub_id], rel=5e-3)


def test_the_defaults_gguf_models_have_the_size_in_their_names():
    """The embedded default's GGUF files, by file name: ~135M and ~270M parameters."""
    for spec in load_config(ROOT / "config" / "config.yaml")["models"].values():
        size = float(re.search(r"(\d+)[mM]", spec["file"]).group(1)) * 1e6
        assert model_dims("x", spec).params == pytest.approx(size, rel=0.02)


def test_units_of_every_linear_layer_are_the_issues_counts():
    """27,648 units per sentence for pythia-70m, 294,912 for 1b, 1,658,880 for 12b (issue 15)."""
    cache = yaml.safe_load(PAPER.read_text())["expertlens"]["cache"]
    got = {m: model_dims(m, {"id": f"EleutherAI/{m}"}).units(cache["modules"])
           for m in ("pythia-70m", "pythia-1b", "pythia-12b")}
    assert got == {"pythia-70m": (27648, 2048), "pythia-1b": (294912, 8192), "pythia-12b": (1658880, 20480)}
    gemma = model_dims("gemma-2b-it", {"id": "google/gemma-2b-it"})
    assert (gemma.h, gemma.layers, gemma.inter, gemma.kv, gemma.vocab, gemma.gated) == (2048, 18, 16384, 256, 256000, True)
    assert gemma.units(["model.layers.*.mlp"]) == (18 * 2048, 2048)  # block MLP outputs: d_model wide


def test_local_model_sizes_come_from_its_config_json(tmp_path):
    from tiny_models import save_tiny

    folder = save_tiny(tmp_path / "tiny")
    d = model_dims("tiny", {"source": "local", "path": str(folder)})
    assert d.layers == 2 and d.h == 16 and d.params > 0
    with pytest.raises(CapacityError, match="snakemake results/models/other"):
        model_dims("other", {"source": "hub", "id": "nobody/unknown-7b"}, root=tmp_path)


@pytest.fixture(scope="module")
def paper_dry_run(tmp_path_factory):
    """paper.yaml's whole DAG planned under profiles/slurm (as tests/core/test_slurm.py plans it)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "LENSFLOW_SLURM_PARTITION": "cpu-q", "LENSFLOW_SLURM_GPU_PARTITION": "gpu-q"}
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path_factory.mktemp("paper")),
           "--configfile", str(PAPER), "--profile", str(ROOT / "profiles" / "slurm"), "-n"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def paper_plan(paper_dry_run):
    jobs = jobs_of_dry_run(paper_dry_run)
    rows, alt = capacity.plan(load_config(PAPER), jobs)
    return jobs, rows, alt


def test_dry_run_parser_reads_what_test_slurm_reads(paper_dry_run):
    from test_slurm import dry_run_resources

    ours = [(j["rule"], j["wildcards"], j["resources"]) for j in jobs_of_dry_run(paper_dry_run)]
    theirs = [(j["rule"], j["wildcards"], j["resources"]) for j in dry_run_resources(paper_dry_run)]
    assert ours == theirs and len(ours) > 300


def test_paper_jobs_declare_the_memory_the_plan_estimates(paper_plan):
    jobs, rows, _ = paper_plan
    short = [(r["rule"], r["wildcards"], f"declared {r['resources']['mem_mb']} MB < {r['host'] * 1000:.0f} MB")
             for r in rows if int(r["resources"]["mem_mb"]) < r["host"] * 1000]
    assert short == []
    # every GPU job is estimated, and fits the 80 GB GPU the README asks for; CPU jobs use no GPU
    unplanned = {j["rule"] for j in jobs if int(j["resources"].get("gpu", 0)) > 0} - {r["rule"] for r in rows}
    assert unplanned == set()
    too_big = [(r["rule"], r["wildcards"], round(r["gpu"], 1)) for r in rows if r["gpu"] > README_GPU_GB]
    assert too_big == []
    assert all(r["gpu"] == 0 for r in rows if int(r["resources"].get("gpu", 0)) == 0)
    assert (README_GPU_GB, HOST_GB, DISK_TB) == (80, 64, 2)


def test_paper_reproduction_fits_2_tb_and_64_gb_of_host_memory(paper_plan):
    _, rows, alt = paper_plan
    assert sum(r["disk"] for r in rows) < DISK_TB * 1000
    assert max(r["host"] for r in rows) < HOST_GB
    assert {r["rule"] for r in rows} >= {"el_expertise_streaming", "lfp_dpo", "lfp_sae", "lfp_activations"}
    # the cached ExpertLens path says what it would cost: terabytes of responses per 12b run
    cached = [r for r in alt if r["rule"] == "cache_activations (cached path)" and "12b" in r["wildcards"]["model"]]
    assert len(cached) == 9 and all(r["disk"] > 1000 for r in cached)
    # Gemma-2b-it's DPO: checkpointing (paper.yaml) is the smaller footprint, and LoRA smaller still
    dpo = {r["rule"].split(": ", 1)[1][:20]: r["gpu"] for r in alt if r["rule"].startswith("lfp_dpo: ")}
    planned = max(r["gpu"] for r in rows if r["rule"] == "lfp_dpo")
    assert dpo["full fine-tuning: fp"] > planned == dpo["+ gradient checkpoin"] > dpo["+ 8-bit AdamW moment"]
    assert dpo["LoRA (peft, not in e"] < 24


def test_the_command_prints_the_plan_from_a_config(tmp_path, paper_dry_run):
    out = tmp_path / "plan.md"
    saved = tmp_path / "dry.txt"
    saved.write_text(paper_dry_run)
    res = subprocess.run([sys.executable, str(ROOT / "workflow" / "scripts" / "capacity_plan.py"), "--configfile",
                          str(PAPER), "--dry-run-output", str(saved), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert text in res.stdout and "| el_expertise_streaming | 27 |" in text and "GPU-hours" in text
    assert "cache_activations (cached path)" in text and " TB |" in text
