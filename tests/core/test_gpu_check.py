"""The GPU check's reading of Snakemake's printout and the jobs' logs (tests/gpu_jobs.py), and its
verdict (tests/gpu_check.py), without a GPU: synthetic printouts and logs, and one real Snakemake run
of a tiny workflow so the parser follows the printout of the Snakemake we pin."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import gpu_check
from gpu_jobs import check_gpu_jobs, covering_targets, log_device, parse_jobs

PRINTOUT = """\
Building DAG of jobs...
Provided resources: gpu=Resource("gpu", 1)

[Sun Dec  6 04:30:22 2026]
rule cache_activations:
    input: results/models/pythia-70m
    output: results/activations/pythia-70m/imdb.parquet
    log: results/logs/cache/pythia-70m.log
    jobid: 3
    reason: Missing output files: results/activations/pythia-70m/imdb.parquet
    wildcards: model=pythia-70m, corpus=imdb
    threads: 2
    resources: tmpdir=/tmp, gpu=1, slurm_partition=$GPU, mem_mb=64000, mem=64 GB
[Sun Dec  6 04:30:22 2026]
localrule el_concepts:
    output: results/expertlens/concepts.parquet
    log: results/logs/expertlens/concepts.log
    jobid: 4
    resources: tmpdir=/tmp, gpu=0
[Sun Dec  6 04:30:23 2026]
Finished jobid: 4 (Rule: el_concepts)
[Sun Dec  6 04:30:24 2026]
Finished jobid: 3 (Rule: cache_activations)
[Sun Dec  6 04:30:24 2026]
rule lfp_sae:
    output: results/lfp/pythia-70m/hh/sae/n.safetensors
    log: results/logs/lfp/pythia-70m/hh/sae.log
    jobid: 7
    wildcards: model=pythia-70m, task=hh
    resources: tmpdir=/tmp, gpu=1
[Sun Dec  6 04:30:25 2026]
Finished jobid: 7 (Rule: lfp_sae)
[Sun Dec  6 04:30:25 2026]
rule lfp_probe_data:
    output: results/lfp/pythia-70m/hh/probe_data.parquet
    log: results/logs/lfp/pythia-70m/hh/probe_data.log
    jobid: 8
    wildcards: model=pythia-70m, task=hh
    resources: tmpdir=/tmp, gpu=1
[Sun Dec  6 04:30:26 2026]
Finished jobid: 8 (Rule: lfp_probe_data)
[Sun Dec  6 04:30:26 2026]
rule lfp_dpo:
    output: results/finetune/pythia-70m/hh/model
    log: results/logs/finetune/pythia-70m/hh.log, results/logs/finetune/pythia-70m/hh.trainer.log
    jobid: 9
    wildcards: model=pythia-70m, task=hh
    resources: tmpdir=/tmp, gpu=1
[Sun Dec  6 04:30:27 2026]
Error in rule lfp_dpo:
    message: None
    jobid: 9
    output: results/finetune/pythia-70m/hh/model
    log: results/logs/finetune/pythia-70m/hh.log (check log file(s) for error details)
    shell:
        (command exited with non-zero exit code)
[Sun Dec  6 04:30:27 2026]
rule lfp_rl:
    output: results/finetune/pythia-70m/vader/model
    log: results/logs/finetune/pythia-70m/vader.log
    jobid: 10
    wildcards: model=pythia-70m, task=vader
    resources: tmpdir=/tmp, gpu=1
Terminating processes on user request, this might take some time.
[Sun Dec  6 04:30:29 2026]
Error in rule lfp_rl:
    message: None
    jobid: 10
    log: results/logs/finetune/pythia-70m/vader.log (check log file(s) for error details)
"""

LOGS = {
    "results/logs/cache/pythia-70m.log": "INFO forward precision: bf16\nINFO device: cuda (job gpu=1, threads=2)\n",
    "results/logs/expertlens/concepts.log": "INFO device: cpu (job gpu=0, threads=1)\n",  # cpu-only job: fine
    "results/logs/lfp/pythia-70m/hh/sae.log": "INFO device: cpu (job gpu=1, threads=2)\n",  # GPU job on cpu
    "results/logs/lfp/pythia-70m/hh/probe_data.log": "INFO loaded 40 texts\n",  # no device line
    "results/logs/finetune/pythia-70m/hh.log": "INFO device: cuda (job gpu=1, threads=2)\nTemplateError: ...\n",
    "results/logs/finetune/pythia-70m/vader.log": "INFO device: cuda (job gpu=1, threads=2)\n",
}


def write_logs(root: Path) -> None:
    for rel, text in LOGS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_job_blocks_are_read_with_resources_logs_and_status():
    jobs = parse_jobs(PRINTOUT)
    assert sorted(jobs) == [3, 4, 7, 8, 9, 10]
    cache = jobs[3]
    assert (cache.rule, cache.gpu, cache.status) == ("cache_activations", 1.0, "finished")
    assert cache.logs == ["results/logs/cache/pythia-70m.log"]
    assert cache.wildcards == {"model": "pythia-70m", "corpus": "imdb"}
    assert cache.resources["mem"] == "64 GB" and cache.resources["slurm_partition"] == "$GPU"
    assert (jobs[4].rule, jobs[4].gpu) == ("el_concepts", 0.0)  # localrule, gpu=0
    assert jobs[9].status == "failed" and len(jobs[9].logs) == 2  # the job block's logs, not the error's
    assert jobs[10].status == "interrupted"  # killed after Snakemake was told to stop


def test_gpu_jobs_on_cpu_or_without_a_device_line_are_reported(tmp_path):
    write_logs(tmp_path)
    rows = {r["rule"]: r for r in check_gpu_jobs(parse_jobs(PRINTOUT), tmp_path)}
    assert set(rows) == {"cache_activations", "lfp_sae", "lfp_probe_data", "lfp_dpo"}  # no cpu-only, no killed
    assert rows["cache_activations"]["device"] == "cuda" and rows["cache_activations"]["problem"] is None
    assert rows["lfp_sae"]["problem"] == "log says cpu"
    assert rows["lfp_probe_data"]["problem"] == "no device line in its log"
    # failed, but it did run on CUDA (its second log does not exist): the failure is reported elsewhere
    assert (rows["lfp_dpo"]["status"], rows["lfp_dpo"]["problem"]) == ("failed", None)


def test_missing_log_and_mixed_devices(tmp_path):
    assert log_device(tmp_path / "absent.log") is None
    (tmp_path / "two.log").write_text("device: cuda (job gpu=1)\ndevice: cpu (job gpu=0)\n")
    assert log_device(tmp_path / "two.log") == "mixed"
    (tmp_path / "word.log").write_text("device: cudagraph\n")  # not a device line
    assert log_device(tmp_path / "word.log") is None


def test_one_target_per_gpu_rule_preferring_the_small_model():
    gemma = ("rule lfp_sae:\n    output: results/lfp/gemma-2b-it/toxic/sae/n.safetensors\n    jobid: 99\n"
             "    wildcards: model=gemma-2b-it, task=toxic\n    resources: tmpdir=/tmp, gpu=1\n")
    targets = covering_targets(parse_jobs(gemma + PRINTOUT))
    assert set(targets) == {"cache_activations", "lfp_sae", "lfp_probe_data", "lfp_dpo", "lfp_rl"}  # gpu>0 only
    assert targets["lfp_sae"] == "results/lfp/pythia-70m/hh/sae/n.safetensors"
    assert covering_targets(parse_jobs(gemma))["lfp_sae"] == "results/lfp/gemma-2b-it/toxic/sae/n.safetensors"


def verdict_of(rows, **rehearsal):
    reh = {"gpu_jobs": rows, "failed_rules": [], "rc": 0, "stopped_at_budget": False, "unchecked_gpu_rules": [],
           **rehearsal}
    return gpu_check.verdict({"throughput": {"errors": []}, "rehearsal": reh})


def test_exit_status(tmp_path):
    write_logs(tmp_path)
    rows = check_gpu_jobs(parse_jobs(PRINTOUT), tmp_path)
    problems, _, code = verdict_of(rows, failed_rules=["lfp_dpo"], rc=1)
    assert code == 1 and len(problems) == 3, problems
    assert any("lfp_sae" in p and "log says cpu" in p for p in problems)
    ok = [r for r in rows if r["problem"] is None and r["status"] == "finished"]
    assert verdict_of(ok)[2] == 0
    assert verdict_of(ok, rc=1, stopped_at_budget=True, unchecked_gpu_rules=["lfp_ablation"])[2] == 2
    assert gpu_check.verdict({"throughput": {"errors": ["cache: OutOfMemoryError"]}})[2] == 1


def test_reads_the_printout_of_a_real_snakemake_run(tmp_path):
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: "a.txt", "b.txt"\n'
        'rule a:\n    output: "a.txt"\n    log: "logs/a.log"\n    resources: gpu=1\n'
        '    shell: "echo \'device: cpu (job gpu=1, threads=1)\' > {log}; touch {output}"\n'
        'rule b:\n    output: "b.txt"\n    log: "logs/b.log"\n    resources: gpu=0\n'
        '    shell: "touch {output} {log}"\n')
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--resources", "gpu=1", "--keep-going"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    jobs = parse_jobs(res.stdout + res.stderr)
    assert {j.rule: (j.gpu, j.status) for j in jobs.values()} == {"a": (1.0, "finished"), "b": (0.0, "finished"),
                                                                   "all": (0.0, "finished")}
    [row] = check_gpu_jobs(jobs, tmp_path)
    assert (row["rule"], row["logs"], row["problem"]) == ("a", ["logs/a.log"], "log says cpu")


def test_rehearsal_is_stopped_at_the_budget_and_what_ran_is_judged(tmp_path, monkeypatch):
    """gpu_check.rehearse with the rehearsal swapped for a tiny workflow: the dry-run's GPU rules go
    first, a job still running at the budget is interrupted (not judged, not failed), and the rule
    it belongs to is reported as unchecked (exit 2)."""
    import gpu_standins
    import rehearse

    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        'rule all:\n    input: "a.txt", "b.txt", "slow.txt"\n'
        'rule a:\n    output: "a.txt"\n    log: "logs/a.log"\n    resources: gpu=1\n'
        '    shell: "echo \'device: cuda (job gpu=1, threads=1)\' > {log}; touch {output}"\n'
        'rule b:\n    output: "b.txt"\n    log: "logs/b.log"\n    resources: gpu=0\n    shell: "touch {output} {log}"\n'
        'rule slow:\n    input: "a.txt"\n    output: "slow.txt"\n    log: "logs/slow.log"\n    resources: gpu=1\n'
        '    shell: "echo \'device: cuda\' > {log}; sleep 120; touch {output}"\n')
    monkeypatch.setattr(rehearse, "prepare", lambda work, endpoint: work / "overlay.yaml")
    monkeypatch.setattr(rehearse, "snakemake_cmd", lambda work, overlay, *args: [
        sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(work), *args])
    monkeypatch.setattr(gpu_standins, "build", lambda root: {})
    args = gpu_check.Args(out=tmp_path / "out", work=tmp_path / "work", cores=2)
    args.out.mkdir()
    res = gpu_check.rehearse(args, stop_at=time.monotonic() + 12)
    assert res["first"] == {"a": "a.txt", "slow": "slow.txt"}
    assert res["stopped_at_budget"] and res["unchecked_gpu_rules"] == ["slow"] and res["failed_rules"] == []
    assert [(r["rule"], r["device"], r["problem"]) for r in res["gpu_jobs"]] == [("a", "cuda", None)]
    assert gpu_check.verdict({"rehearsal": res})[2] == 2
    assert "rule slow:" in (args.out / "snakemake.log").read_text()
