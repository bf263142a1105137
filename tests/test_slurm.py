"""SLURM for real: a one-node cluster on loopback runs part of the tiny config through profiles/slurm.

The cluster (slurm_cluster.py) is installed from Debian's packages when missing and started for
this module only; the test skips only when apt cannot install it. The workflow is submitted with
`--profile profiles/slurm` as shipped: the partitions come from LENSFLOW_SLURM_PARTITION /
LENSFLOW_SLURM_GPU_PARTITION, and the cluster has no job accounting, hence
`--slurm-status-command squeue` (what profiles/README.md tells such clusters to add).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from failure_logs import failure_report
from slurm_cluster import LocalSlurm, ensure_slurm
from workflow_helpers import ROOT, SNAKEMAKE, TINY, tiny_workdir

pytestmark = pytest.mark.slow

TARGETS = [
    "results/activations/tiny-llama/headlines/mlp-max.parquet",  # cache_activations (gpu=1)
    "results/figures/expertlens/expert_counts.png",  # a figure, through the ExpertLens chain
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = ensure_slurm()
    if why:
        pytest.skip(why)
    with LocalSlurm(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def subset_config(folder):
    """The tiny config cut to one ExpertLens model and data set, without fine-tuning (fewer jobs)."""
    cfg = yaml.safe_load(TINY.read_text())
    el = cfg["expertlens"]
    el.update(models=["tiny-llama"], datasets={"mined": el["datasets"]["mined"]}, dynamics=[], baselines=[])
    del cfg["finetune"], cfg["lfp"]  # the LFP stages need fine-tuning
    cfg["activations"]["targets"] = cfg["activations"]["targets"][:1]
    path = folder / "slurm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def submit(cluster, work, config, *args, timeout=900):
    """snakemake --profile profiles/slurm in `work`, the jobs going to the test cluster."""
    env = {**cluster.env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "LENSFLOW_SLURM_PARTITION": "debug", "LENSFLOW_SLURM_GPU_PARTITION": "debug"}
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(config),
           "--profile", str(ROOT / "profiles" / "slurm"), "--jobs", "2",
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
           "--slurm-keep-successful-logs", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def slurm_jobs(cluster) -> dict[str, str]:
    """{SLURM job id: its `scontrol show job` record} for every job the controller still knows."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, env=cluster.env).stdout
    return {re.search(r"JobId=(\d+)", line).group(1): line for line in out.splitlines() if "JobId=" in line}


def test_tiny_subset_runs_on_slurm(cluster, tmp_path):
    work = tiny_workdir(tmp_path / "work")
    config = subset_config(tmp_path)
    before = set(slurm_jobs(cluster))
    res = submit(cluster, work, config, *TARGETS)
    assert res.returncode == 0, failure_report(res, work) + "\n" + cluster.logs()

    # every output of the planned DAG is there and complete
    plan = subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile",
                           str(config), "-n", "--cores", "1", *TARGETS], capture_output=True, text=True)
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-3000:]
    import pyarrow.parquet as pq

    cache = pq.read_table(work / TARGETS[0])
    assert cache.num_rows == pq.read_table(work / "results/data/headlines.parquet").num_rows
    for ext in ("png", "pdf"):
        assert (work / f"results/figures/expertlens/expert_counts.{ext}").stat().st_size > 1000

    # every job went through SLURM (one SLURM log per job), the caches with a GPU
    jobs = {k: v for k, v in slurm_jobs(cluster).items() if k not in before}
    rules = [re.search(r"Comment=rule_(\w+?)(?:_wildcards_\S*)? ", j).group(1) for j in jobs.values()]
    expected = {"materialise_model": 1, "prepare_data": 3, "el_concepts": 1, "el_dataset_mined": 1,
                "cache_activations": 2, "el_expertise": 1, "fig_el_expert_counts": 1}
    assert {r: rules.count(r) for r in set(rules)} == expected, rules
    for job in jobs.values():
        assert "JobState=COMPLETED" in job, job
        gpu = "gres:gpu:1" in job or "gres/gpu:1" in job
        assert gpu == ("Comment=rule_cache_activations" in job), job
    logs = list((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == sum(expected.values()), logs


def test_failed_slurm_job_shows_its_logs(cluster, tmp_path):
    """A job that fails on the cluster: the rule's log and SLURM's log reach the failure report."""
    work = tmp_path / "work"
    (work / "no-weights").mkdir(parents=True)  # a model folder with nothing in it
    cfg = yaml.safe_load(TINY.read_text())
    cfg["models"]["broken"] = {"source": "local", "path": "no-weights"}
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(cfg))
    res = submit(cluster, work, config, "--retries", "0", "results/models/broken", timeout=300)
    assert res.returncode != 0
    report = failure_report(res, work)
    rule_log = work / "results/logs/models/broken.log"
    slurm_logs = list((work / ".snakemake" / "slurm_logs" / "rule_materialise_model").rglob("*.log"))
    assert rule_log.is_file() and len(slurm_logs) == 1, report
    assert f"===== {rule_log}" in report and f"===== {slurm_logs[0]}" in report, report
    # the error itself, naming the folder, is in the report twice: from the rule's log and SLURM's
    error = "broken: local model folder 'no-weights' has no config.json or no weights"
    assert report.count(error) >= 2, report
    assert not (work / "results/models/broken").exists()


def test_profile_sends_every_gpu_rule_to_the_gpu_partition():
    """A rule with gpu=1 missing from the profile's set-resources would land on the CPU partition."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_rules = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            if m and re.search(r"^\s+gpu=1,", block, re.M):
                gpu_rules.add(m.group(1))
    assert {"cache_activations", "lfp_rl", "lfp_dpo"} <= gpu_rules
    routed = {r for r, res in profile["set-resources"].items() if "LENSFLOW_SLURM_GPU_PARTITION" in
              str(res.get("slurm_partition"))}
    assert sorted(gpu_rules - routed) == []
    assert "LENSFLOW_SLURM_PARTITION" in profile["default-resources"]["slurm_partition"]
