"""The job-times table (lensflow.core.job_times, rule job_times) and the machine description
(lensflow.core.machine): Snakemake benchmark files parsed, matched to their rules, summed per rule; the
CPU's model and flags read from a mocked /proc/cpuinfo; every job of the shipped configs benchmarked."""

import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from lensflow.core import machine
from lensflow.core.job_times import (UNKNOWN_RULE, BenchmarkError, collect, hms, markdown, match_rule, parse_hms,
                                     pattern_regex, per_rule, read_benchmark, summary)
from workflow_helpers import ROOT, SNAKEMAKE

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path, *rows):
    """A benchmark file as Snakemake writes it: the header, then one line per run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


# --- parsing ------------------------------------------------------------------------------------


def test_parse_hms_reads_snakemake_durations():
    assert parse_hms("0:00:03") == 3
    assert parse_hms("1:02:03") == 3723
    assert parse_hms("1 day, 0:00:01") == 86401
    assert parse_hms("3 days, 2:00:00") == 3 * 86400 + 7200


def test_read_benchmark_parses_numbers_and_missing_samples(tmp_path):
    f = bench(tmp_path / "b.tsv",
              [75.31, "0:01:15", 512.5, 2048.0, 400.25, 450.0, 12.5, 3.25, 88.1, 66.3],
              [0.2, "0:00:00", "NA", "NA", "NA", "NA", "NA", "NA", "NA", "NA"],  # ended before the first sample
              [1.5, "0:00:01", 10.0, 20.0, 5.0, 6.0, "-", "-", 50.0, 0.75])  # no I/O counters: "-"
    df = read_benchmark(f)
    assert list(df["s"]) == [75.31, 0.2, 1.5]
    assert df.loc[0, "max_rss"] == 512.5 and df.loc[0, "cpu_time"] == 66.3 and df.loc[0, "io_out"] == 3.25
    assert df.loc[1, ["max_rss", "max_uss", "cpu_time", "mean_load"]].isna().all()
    assert math.isnan(df.loc[2, "io_in"]) and df.loc[2, "cpu_time"] == 0.75


def test_read_benchmark_reads_the_extended_format(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text(HEADER.rstrip("\n") + "\tjobid\trule_name\twildcards\tparams\tthreads\tcpu_usage\tresources\tinput_size_mb\n"
                 "2.5\t0:00:02\t100\t200\t50\t60\t1\t1\t90\t2.2\t7\tlfp_sae\t{'model': 'm', 'variant': 'n'}\t{}\t1\t2.2\t{}\t{}\n")
    jobs = collect(tmp_path, {})  # no pattern needed: the file names its rule
    assert list(jobs["rule"]) == ["lfp_sae"] and list(jobs["job"]) == ["model=m, variant=n"]


def test_read_benchmark_refuses_other_tables(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(BenchmarkError, match="t.tsv.*not a Snakemake benchmark file"):
        read_benchmark(tmp_path / "t.tsv")


# --- rules from benchmark paths ---------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    "results/benchmarks/lfp/{model}/{task}/sae_{variant}.tsv",
    "results/benchmarks/finetune/{model}/{task,vader|imdb-rl}/train.tsv",
    "results/benchmarks/x/{a,[0-9]{2}}/{b}/{a}.tsv",
    "results/benchmarks/figures/lfp_training_{model}_{task}.tsv",
])
def test_pattern_regex_is_snakemakes(pattern):
    from snakemake.io import regex_from_filepattern

    assert pattern_regex(pattern).pattern == regex_from_filepattern(pattern)


def test_match_rule_uses_wildcard_constraints():
    patterns = {
        "lfp_rl": "results/benchmarks/finetune/{model}/{task,vader}/train.tsv",
        "lfp_dpo": "results/benchmarks/finetune/{model}/{task,hh|toxic}/train.tsv",
        "lfp_probe": "results/benchmarks/lfp/{model,m1|m2}/{task,vader|hh}/probe.tsv",
        "lfp_base_probe": "results/benchmarks/lfp/{model,m1|m2}/{task,vader|hh}/base/probe.tsv",
    }
    assert match_rule("results/benchmarks/finetune/m1/vader/train.tsv", patterns) == (
        "lfp_rl", {"model": "m1", "task": "vader"})
    assert match_rule("results/benchmarks/finetune/m1/hh/train.tsv", patterns)[0] == "lfp_dpo"
    assert match_rule("results/benchmarks/lfp/m2/hh/base/probe.tsv", patterns) == (
        "lfp_base_probe", {"model": "m2", "task": "hh"})
    assert match_rule("results/benchmarks/lfp/m2/hh/probe.tsv", patterns)[0] == "lfp_probe"
    assert match_rule("results/benchmarks/old_rule/x.tsv", patterns) == (UNKNOWN_RULE, {})
    # two rules whose patterns both match: both named, not one picked at random
    both = {"a": "results/benchmarks/{x}.tsv", "b": "results/benchmarks/{y}.tsv"}
    assert match_rule("results/benchmarks/z.tsv", both)[0] == "a or b"


# --- collecting and aggregating ---------------------------------------------------------------

PATTERNS = {
    "lfp_sae": "results/benchmarks/lfp/{model}/{task}/sae_{variant}.tsv",
    "materialise_model": "results/benchmarks/models/{model}.tsv",
    "el_concepts": "results/benchmarks/expertlens/concepts.tsv",
    "job_times": "results/benchmarks/job_times.tsv",
}


@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    """A results folder after a run: benchmark files of 5 jobs of 3 rules (+ clutter), mtimes set."""
    monkeypatch.chdir(tmp_path)
    b = tmp_path / "results/benchmarks"
    t0 = 1_800_000_000
    files = {
        "models/m1.tsv": ([20.0, "0:00:20", 900.0, 1, 800.0, 1, 1, 1, 50.0, 10.0], t0 + 20),
        "models/m2.tsv": ([40.0, "0:00:40", 1500.0, 1, 1400.0, 1, 1, 1, 50.0, 20.0], t0 + 60),
        "lfp/m1/vader/sae_n.tsv": ([100.0, "0:01:40", 700.0, 1, 600.0, 1, 1, 1, 190.0, 190.0], t0 + 200),
        "lfp/m1/vader/sae_2n.tsv": ([60.0, "0:01:00", 650.0, 1, 500.0, 1, 1, 1, 100.0, 60.0], t0 + 160),
        "expertlens/concepts.tsv": ([0.3, "0:00:00", "NA", "NA", "NA", "NA", "NA", "NA", "NA", "NA"], t0 + 61),
        "job_times.tsv": ([1.0, "0:00:01", 100, 1, 1, 1, 1, 1, 1, 1], t0 + 300),  # its own, from a last run
        "renamed/thing.tsv": ([5.0, "0:00:05", 10, 1, 1, 1, 1, 1, 1, 1], t0 + 5),
    }
    for rel, (row, mtime) in files.items():
        os.utime(bench(b / rel, row), (mtime, mtime))
    (b / "stray.tsv").write_text("not\ta\nbenchmark\tfile\n")
    bench(b / "lfp/m1/vader/.sae_n.tsv.abc.tmp.tsv", [1, "0:00:01", 1, 1, 1, 1, 1, 1, 1, 1])  # hidden: ignored
    (b / "job_times.md").write_text("an earlier table\n")  # not a .tsv: ignored
    return tmp_path


def test_collect_makes_one_row_per_job_slowest_first(run_folder):
    jobs = collect("results/benchmarks", PATTERNS, exclude=["results/benchmarks/job_times.tsv"])
    assert list(jobs["rule"]) == ["lfp_sae", "lfp_sae", "materialise_model", "materialise_model", UNKNOWN_RULE,
                                  "el_concepts"]
    assert list(jobs["job"][:3]) == ["model=m1, task=vader, variant=n", "model=m1, task=vader, variant=2n",
                                     "model=m2"]
    assert jobs.loc[4, "job"] == "renamed/thing.tsv"  # no rule: the file names the job
    assert jobs.loc[0, "benchmark"] == "results/benchmarks/lfp/m1/vader/sae_n.tsv"
    top = jobs.iloc[0]
    assert (top["wall_s"], top["cpu_s"], top["max_rss_mb"], top["max_uss_mb"]) == (100.0, 190.0, 700.0, 600.0)
    assert top["cpu_per_wall"] == pytest.approx(1.9) and top["finished"] == "2027-01-15T08:03:20Z"
    concepts = jobs[jobs["rule"] == "el_concepts"].iloc[0]
    assert concepts["wall_s"] == 0.3 and math.isnan(concepts["cpu_s"]) and math.isnan(concepts["max_rss_mb"])
    assert jobs.attrs["skipped"] and "stray.tsv" in jobs.attrs["skipped"][0]


def test_repeated_runs_of_a_job_add_up(tmp_path):
    bench(tmp_path / "models/m.tsv", [10.0, "0:00:10", 100, 1, 1, 1, 1, 1, 1, 8.0],
          [12.0, "0:00:12", 300, 1, 1, 1, 1, 1, 1, 9.0])
    job = collect(tmp_path, {"materialise_model": "models/{model}.tsv"}, relative_to=tmp_path).iloc[0]
    assert (job["rule"], job["wall_s"], job["cpu_s"], job["max_rss_mb"], job["runs"]) == (
        "materialise_model", 22.0, 17.0, 300.0, 2)


def test_per_rule_sums_and_sorts_by_total_wall_time(run_folder):
    jobs = collect("results/benchmarks", PATTERNS, exclude=["results/benchmarks/job_times.tsv"])
    rules = per_rule(jobs).set_index("rule")
    assert list(rules.index) == ["lfp_sae", "materialise_model", UNKNOWN_RULE, "el_concepts"]
    sae = rules.loc["lfp_sae"]
    assert (sae["jobs"], sae["wall_s"], sae["wall_max_s"], sae["cpu_s"], sae["max_rss_mb"]) == (2, 160.0, 100.0,
                                                                                                 250.0, 700.0)
    assert sae["wall_share"] == pytest.approx(160 / 225.3) and sae["cpu_per_wall"] == pytest.approx(250 / 160)
    assert rules.loc["materialise_model", "max_rss_mb"] == 1500.0  # the highest peak, not a sum
    concepts = rules.loc["el_concepts"]  # never sampled: no CPU time, no memory, not zero
    assert math.isnan(concepts["cpu_s"]) and math.isnan(concepts["max_rss_mb"]) and concepts["memory_sampled_jobs"] == 0
    assert rules["wall_share"].sum() == pytest.approx(1.0)


def test_summary_spans_first_start_to_last_end(run_folder):
    jobs = collect("results/benchmarks", PATTERNS, exclude=["results/benchmarks/job_times.tsv"])
    s = summary(jobs)
    assert s["jobs"] == 6 and s["wall_s"] == pytest.approx(225.3) and s["cpu_s"] == pytest.approx(281.0)
    # m1 started at t0 + 0 (ended t0 + 20 after 20 s); sae_n ended last, at t0 + 200
    assert s["span_s"] == pytest.approx(200.0) and s["first_start"] == "2027-01-15T08:00:00Z"
    assert summary(jobs.iloc[:0])["jobs"] == 0


def test_markdown_names_the_machine_and_both_tables(run_folder):
    jobs = collect("results/benchmarks", PATTERNS, exclude=["results/benchmarks/job_times.tsv"])
    md = markdown(per_rule(jobs), jobs, summary(jobs), "machine: Test CPU, x86_64")
    assert "machine: Test CPU, x86_64" in md and "## Per rule, by total wall time" in md and "## Per job" in md
    assert "| lfp_sae | 2 | 2:40 | 71.0% | 1:40 | 4:10 | 1.56 | 700 |" in md
    assert "| el_concepts | — | 0:00 | — | — | — |" in md  # not sampled: a dash, not 0
    assert "left out, not a benchmark file: results/benchmarks/stray.tsv" in md
    assert hms(3725) == "1:02:05" and hms(65) == "1:05" and hms(float("nan")) == "—"


# --- the machine ------------------------------------------------------------------------------

EPYC_ROME = """\
processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 23
model		: 49
model name	: AMD EPYC 7B12
flags		: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni
physical id	: 0
core id		: 0

processor	: 1
vendor_id	: AuthenticAMD
cpu family	: 23
model		: 49
model name	: AMD EPYC 7B12
flags		: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni
physical id	: 0
core id		: 1
"""

SAPPHIRE_RAPIDS = """\
processor	: 0
cpu family	: 6
model		: 143
model name	: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags		: fpu avx avx2 avx512f avx512dq avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""

GRAVITON3 = """\
processor	: 0
BogoMIPS	: 2100.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid sve bf16 i8mm
CPU implementer	: 0x41
CPU part	: 0xd40
"""


def test_parse_cpuinfo_x86_and_arm():
    rome = machine.parse_cpuinfo(EPYC_ROME)
    assert rome["model"] == "AMD EPYC 7B12" and rome["family"] == "family 23 model 49"
    assert "avx2" in rome["flags"] and rome["physical_cores"] == 2
    arm = machine.parse_cpuinfo(GRAVITON3)
    assert arm["model"] is None and arm["family"] is None and "bf16" in arm["flags"]
    assert machine.parse_cpuinfo("") == {"model": None, "family": None, "flags": set(), "physical_cores": None}


def test_cpu_features_tell_native_bf16_apart():
    avx2_only = machine.cpu_features(machine.parse_cpuinfo(EPYC_ROME)["flags"], "x86_64")
    assert avx2_only == {"avx2": True, "avx512": False, "avx512_bf16": False, "amx": False, "bf16_native": False}
    spr = machine.cpu_features(machine.parse_cpuinfo(SAPPHIRE_RAPIDS)["flags"], "x86_64")
    assert spr == {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": True, "bf16_native": True}
    assert machine.cpu_features({"avx2", "avx512f", "amx_tile"}, "x86_64")["bf16_native"] is False
    assert machine.cpu_features(machine.parse_cpuinfo(GRAVITON3)["flags"], "aarch64")["bf16_native"] is True
    assert machine.cpu_features(set(), "x86_64")["avx2"] is None  # no flags: unknown, not "no"


def test_describe_and_machine_line_from_a_mocked_cpuinfo(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(EPYC_ROME)
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    d = machine.describe(cpuinfo_path=str(tmp_path / "cpuinfo"), with_torch=False)
    assert d["cpu_model"] == "AMD EPYC 7B12" and d["avx2"] and d["avx512"] is False and d["amx"] is False
    assert d["logical_cores"] == os.cpu_count() and d["torch"] == "not checked" and json.dumps(d)
    line = machine.machine_line(d)
    assert line.startswith("machine: AMD EPYC 7B12 (family 23 model 49), x86_64, ")
    assert "AVX2 yes, AVX-512 no, AVX512-BF16 no, AMX no" in line and line.endswith("torch not checked (not loaded), GPU not checked")
    assert machine.machine_line(dict(d, torch=None)).endswith("; no torch; CUDA: none")
    gpu = dict(d, torch="2.5.1", torch_cpu_capability="AVX2", cuda="12.4", gpus=["NVIDIA H100 80GB HBM3"], gpu_bf16=True)
    assert "torch 2.5.1 (CPU kernels AVX2); CUDA 12.4: NVIDIA H100 80GB HBM3 (native bf16 yes)" in machine.machine_line(gpu)
    unknown = machine.machine_line(dict(d, cpu_model=None, cpu_family=None, **machine.cpu_features(set(), "x86_64")))
    assert "unknown CPU" in unknown and "AVX2 ?, AVX-512 ?" in unknown


def test_machine_line_of_this_machine_names_torch():
    line = machine.machine_line()
    assert line.startswith("machine: ") and re.search(r"torch \d", line), line


# --- the workflow: every job benchmarked, every benchmark file back to its rule ----------------

RULE_PATTERNS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
    with SnakemakeApi(OutputSettings()) as api:
        w = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                         config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
                         snakefile=Path(sys.argv[2]), workdir=Path(sys.argv[3]))
        rules = w._workflow.rules  # not public API: the rules as job_times' params see them
        print(json.dumps({r.name: str(r.benchmark) for r in rules if r.benchmark}))
""")


@pytest.mark.parametrize("config", ["config.yaml", "paper.yaml"])
def test_every_job_has_its_own_benchmark_file_that_names_its_rule(tmp_path, config):
    cfg = ROOT / "config" / config
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    res = subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "-n", "--cores", "2",
                          "--configfile", str(cfg)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs, job = [], None
    for line in res.stdout.splitlines():
        m = re.match(r"(?:local)?rule (\w+):$", line)
        if m:
            job = {"rule": m.group(1), "benchmark": None}
            jobs.append(job)
        elif job and line.startswith("    benchmark: "):
            job["benchmark"] = line.split(": ", 1)[1]
    assert len(jobs) > 100
    assert [j["rule"] for j in jobs if j["benchmark"] is None] == ["all"]
    paths = [j["benchmark"] for j in jobs if j["benchmark"]]
    assert len(set(paths)) == len(paths)  # no two jobs write one file
    out = subprocess.run([sys.executable, "-c", RULE_PATTERNS, str(cfg), str(ROOT / "Snakefile"), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    patterns = json.loads(out.stdout.strip().splitlines()[-1])
    wrong = [(j["rule"], j["benchmark"], match_rule(j["benchmark"], patterns)[0]) for j in jobs
             if j["benchmark"] and match_rule(j["benchmark"], patterns)[0] != j["rule"]]
    assert wrong == []


def test_benchmark_files_mirror_the_logs():
    """Each rule's benchmark path is its log path under results/benchmarks/ (.tsv for .log): unique
    as the logs are, and found where the log is. `use rule` blocks name their own (an inherited one
    would be the parent's file)."""
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        blocks = re.split(r"\n(?=\s*(?:rule \w+:|use rule \w+ as \w+ with:))", smk.read_text())
        for block in blocks[1:] if not re.match(r"\s*(rule|use rule)", blocks[0]) else blocks:
            name = re.match(r"\s*(?:rule (\w+)|use rule \w+ as (\w+))", block)
            log = re.search(r'log:\s*\n\s*"results/logs/([^"]+)\.log"', block)
            if not log:
                continue  # a target rule (inputs only)
            bm = re.search(r'benchmark:\s*\n\s*"results/benchmarks/([^"]+)\.tsv"', block)
            assert bm and bm.group(1) == log.group(1), (smk.name, name.group(1) or name.group(2))


# --- the job's own accounting (lensflow.core.usage) --------------------------------------------

def test_a_script_logs_its_exact_cpu_time_as_it_exits(tmp_path):
    """A child process that sets up logging and burns ~0.4 s of CPU: its log ends with the usage
    line, and read_usage gives back at least that CPU time (a Snakemake sample at 15 s would not)."""
    from lensflow.core.usage import read_usage

    log = tmp_path / "job.log"
    code = ("import time\nfrom lensflow.core.runtime import setup_logging\nsetup_logging(%r)\n"
            "t = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n" % str(log))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")})
    assert res.returncode == 0, res.stderr[-2000:]
    u = read_usage(log)
    assert u is not None and u["cpu_s"] >= 0.4 and 10 < u["max_rss_mb"] < 10_000
    assert read_usage(tmp_path / "missing.log") is None


def test_collect_prefers_the_logged_usage_over_the_sample(run_folder):
    logs = run_folder / "results/logs"
    (logs / "lfp/m1/vader").mkdir(parents=True)
    (logs / "lfp/m1/vader/sae_n.log").write_text("2026 INFO training\n2026 INFO job usage: cpu_s=251.50 max_rss_mb=812.0\n")
    (logs / "models").mkdir()
    (logs / "models/m1.log").write_text("2026 INFO no usage line: the job predates it\n")
    jobs = collect("results/benchmarks", PATTERNS, exclude=["results/benchmarks/job_times.tsv"],
                   logs="results/logs").set_index("job")
    n = jobs.loc["model=m1, task=vader, variant=n"]
    assert (n["cpu_s"], n["cpu_source"], n["max_rss_mb"]) == (251.5, "rusage", 812.0)  # sampled: 190, 700
    assert n["cpu_per_wall"] == pytest.approx(2.515)
    m1 = jobs.loc["model=m1"]
    assert (m1["cpu_s"], m1["cpu_source"]) == (10.0, "sampled")
    assert "(1 of 6 jobs)" in markdown(per_rule(jobs.reset_index()), jobs.reset_index(), summary(jobs.reset_index()), "m")
