"""SLURM for real: a one-node cluster on loopback runs part of the tiny config through profiles/slurm.

The cluster (slurm_cluster.py) is installed from Debian's packages when missing and started for
this module only; the test skips only when apt cannot install it. The workflow is submitted with
`--profile profiles/slurm` as shipped: the partitions come from LENSFLOW_SLURM_PARTITION /
LENSFLOW_SLURM_GPU_PARTITION, and the cluster has no job accounting, hence
`--slurm-status-command squeue` (what profiles/README.md tells such clusters to add).

Without a cluster: paper.yaml dry-run under the profile, each job's resources as Snakemake resolved
them (the `resources:` lines it prints): GPU jobs and only those on the GPU partition, and the
memory of jobs that load a model sized from the model.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from failure_logs import failure_report
from run_checks import planned_jobs
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


def dry_run_resources(out: str) -> list[dict]:
    """Every job of a dry-run's printout: {"rule", "input" (the line), "wildcards": {}, "resources": {}}."""
    jobs, job = [], None
    for line in out.splitlines():
        m = re.match(r"(?:local)?rule (\w+):$", line)
        if m:
            job = {"rule": m.group(1), "input": "", "wildcards": {}}
        elif job and line.startswith("    input: "):
            job["input"] = line.split(": ", 1)[1]
        elif job and line.startswith("    wildcards: "):
            job["wildcards"] = dict(kv.split("=", 1) for kv in line.split(": ", 1)[1].split(", "))
        elif job and line.startswith("    resources: "):
            job["resources"] = dict(kv.split("=", 1) for kv in line.split(": ", 1)[1].split(", "))
            jobs.append(job)
            job = None
    return jobs


def plan_under_profile(work, config, *targets):
    """Dry-run of `config` under profiles/slurm, the partitions set: (jobs as dry_run_resources, output)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "LENSFLOW_SLURM_PARTITION": "cpu-q", "LENSFLOW_SLURM_GPU_PARTITION": "gpu-q"}
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(config),
           "--profile", str(ROOT / "profiles" / "slurm"), "-n", *targets]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    return dry_run_resources(out), out


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory):
    """Every job of paper.yaml as planned under profiles/slurm (nothing exists: the whole DAG)."""
    jobs, out = plan_under_profile(tmp_path_factory.mktemp("paper"), ROOT / "config" / "paper.yaml")
    assert len(jobs) == sum(planned_jobs(out).values()) > 300  # every planned job printed its resources
    return jobs


def gpus(job) -> int:
    return int(job["resources"].get("gpu", 0))


def test_paper_dry_run_sends_every_gpu_job_and_only_those_to_the_gpu_partition(paper_plan):
    """Each job's resources as resolved by Snakemake, under profiles/slurm: gpu > 0 <=> GPU partition.

    Read from the dry-run, so `gpu` inherited through `use rule` (the base control) or computed from
    the config (a local or remote generator, rewriter, explainer) counts as the job sees it."""
    gpu_rules = {j["rule"] for j in paper_plan if gpus(j) > 0}
    cpu_rules = {j["rule"] for j in paper_plan if gpus(j) == 0}
    # the cases a list of rule names missed or cannot express: inherited gpu=1, gpu computed per job
    assert {"cache_activations", "lfp_dpo", "lfp_base_activations", "lfp_base_sae",
            "lfp_base_probe_data", "el_dataset_generated", "el_expertise_streaming"} <= gpu_rules
    assert {"lfp_triples", "materialise_model"} <= cpu_rules  # paper.yaml's rewriter is remote
    assert "el_expertise" not in gpu_rules | cpu_rules  # paper.yaml: expertlens.expertise.path streaming
    wrong = sorted({(j["rule"], gpus(j), j["resources"].get("slurm_partition")) for j in paper_plan
                    if j["resources"].get("slurm_partition") != ("gpu-q" if gpus(j) > 0 else "cpu-q")})
    assert wrong == []
    # nothing to keep in sync: the profile names no rule to route
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert not any("slurm_partition" in r for r in (profile.get("set-resources") or {}).values())


# Parameters (billions) and bytes per parameter (registry dtype) of paper.yaml's models, from their
# hub configs: a job that loads a model must ask for at least twice its weights (loading then
# moving, policy + reference). Checked here independently of the workflow's own size table.
PAPER_WEIGHTS = {"pythia-70m": (0.070, 4), "pythia-160m": (0.162, 4), "gpt-neo-125m": (0.125, 4),
                 "pythia-1b": (1.01, 4), "pythia-12b": (11.8, 2), "gemma-2b-it": (2.5, 4)}


# Rules that take a model folder as input for its manifest or tokenizer only, never its weights.
READ_NO_WEIGHTS = {"inventory", "el_alignment", "fig_el_expert_layers", "lfp_records", "lfp_detection"}


def loaded_models(job) -> set[str]:
    """Registry models (checkpoints and tuned policies by their base) whose weights a job reads or writes."""
    found = re.findall(r"results/models/([^/,\s@]+)(?:@\w+)?(?=[,\s]|$)", job["input"])
    found += re.findall(r"results/finetune/([^/,\s]+)/[^/,\s]+/model(?=[,\s]|$)", job["input"])
    if job["rule"] == "materialise_model":
        found.append(job["wildcards"]["model"].split("@")[0])
    return set(found)


def test_paper_jobs_ask_for_the_memory_of_the_model_they_load(paper_plan):
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    cpu_mb = config["resources"]["cpu_job"]["mem_mb"]
    seen, materialise = set(), {}
    for job in paper_plan:
        mem = int(job["resources"]["mem_mb"])
        if job["rule"] == "el_baseline_embedding":  # reads the embedding rows it needs, not the model
            assert mem == cpu_mb, job  # declared (it had Snakemake's default of 4 GB)
            continue
        if job["rule"] in READ_NO_WEIGHTS:
            continue
        for m in loaded_models(job):
            seen.add(m)
            params_b, nbytes = PAPER_WEIGHTS[m]
            assert mem >= 2 * params_b * 1e9 * nbytes / 1e6, (m, job)
        if job["rule"] == "materialise_model":
            materialise[job["wildcards"]["model"]] = mem
    assert seen == set(PAPER_WEIGHTS)
    # the 12b and its checkpoints outgrow the CPU family's 16 GB when materialised; the 70m does not
    assert materialise["pythia-70m"] == materialise["pythia-70m@step1"] == cpu_mb
    assert materialise["pythia-12b"] == materialise["pythia-12b@step1"] > 2 * 11.8e9 * 2 / 1e6


def test_model_size_comes_from_the_config_when_given(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    cfg["resources"]["model_memory"] = {"params_b": {"pythia-70m": 100}, "overhead_mb": 1000, "copies": 2}
    config = tmp_path / "paper-big-70m.yaml"
    config.write_text(yaml.safe_dump(cfg))
    jobs, _ = plan_under_profile(tmp_path, config, "results/models/pythia-70m",
                                 "results/models/pythia-70m@step1000", "results/models/pythia-160m")
    mem = {j["wildcards"]["model"]: int(j["resources"]["mem_mb"]) for j in jobs}
    # 1000 + 2 x 100e9 x 4 B, for the model and its checkpoints alike; the 160m keeps the 16 GB floor
    assert mem == {"pythia-70m": 801000, "pythia-70m@step1000": 801000, "pythia-160m": 16000}
    cfg["resources"]["model_memory"]["params_b"] = {"pythia-7O0m": 1}
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                          str(config), "-n", "results/models/pythia-70m"], capture_output=True, text=True, env=env)
    assert res.returncode != 0 and "resources.model_memory.params_b.pythia-7O0m" in res.stdout + res.stderr
