"""The capacity plan as the command prints it (workflow/scripts/capacity_plan.py): the config files
deep-merged as Snakemake merges them, the jobs of a dry-run of the whole DAG, and lensflow.core.capacity's
estimates as Markdown: totals, one row per job kind, one per job kind and model, and what is not in this
DAG (the ExpertLens path not taken, smaller DPO footprints of 1B+ models).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml

from .capacity import BW_EFF, ESTIMATED, GPU, MFU, STEP_S

class DryRunError(RuntimeError):
    """`snakemake -n` failed; the message ends with its output."""


def merged(paths) -> dict:
    """The YAML files `paths` deep-merged in order, as Snakemake merges several --configfile."""
    def merge(a, b):
        return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                        for k, v in b.items()}}
    cfg = {}
    for p in paths:
        cfg = merge(cfg, yaml.safe_load(Path(p).read_text()) or {})
    return cfg


def dry_run(snakefile, configfiles) -> str:
    """`snakemake -n` of the whole DAG of `snakefile` in an empty folder (nothing exists, every job is
    listed), offline; DryRunError with the end of its output when it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as work:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", work,
               "--configfile", *map(str, configfiles), "-n"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path.cwd())
    if res.returncode:
        raise DryRunError(f"snakemake -n failed:\n{(res.stdout + res.stderr)[-3000:]}")
    return res.stdout + res.stderr


CARDS = [(24, "24 GB (L4, A10)"), (40, "40 GB (A100-40)"), (48, "48 GB (L40S, A6000)"), (80, "80 GB (A100, H100)"),
         (141, "141 GB (H200)")]


def card(gpu_gb: float) -> str:
    """The smallest usual GPU memory size the job fits, or what it needs beyond one card."""
    if gpu_gb <= 0:
        return "none (CPU)"
    return next((name for size, name in CARDS if gpu_gb <= size), f"> 141 GB: {gpu_gb:.0f} GB, no single GPU")


def size(gb: float) -> str:
    return f"{gb / 1000:.2f} TB" if gb >= 1000 else f"{gb:.1f} GB" if gb >= 0.1 else "< 0.1 GB"


def base(model: str) -> str:
    return model.split("+")[0].split("@")[0]


def group(rows, key):
    """{key: rows}, in pipeline order (lensflow.core.capacity.ESTIMATED), then as the dry-run lists them."""
    out = defaultdict(list)
    order = {rule: i for i, rule in enumerate(ESTIMATED)}
    for r in sorted(rows, key=lambda r: order.get(r["rule"], len(order))):
        out[key(r)].append(r)
    return out


def line(cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def summary(rows) -> dict:
    big = lambda k: max(rows, key=lambda r: r[k])  # noqa: E731
    return {"jobs": len(rows), "disk": sum(r["disk"] for r in rows), "hours": sum(r["hours"] for r in rows),
            "host": big("host"), "gpu": big("gpu")}


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def declared(rs) -> str:
    mem = [int(r["resources"]["mem_mb"]) for r in rs if "mem_mb" in r.get("resources", {})]
    lo, hi = (f"{x / 1000:.1f}" for x in (min(mem), max(mem))) if mem else ("-", "-")
    return lo if lo == hi else f"{lo}-{hi}"


def markdown(title: str, rows: list[dict], alt: list[dict]) -> str:
    """The plan (rows, alternatives of lensflow.core.capacity.plan) as Markdown headed `title`."""
    s, g = summary(rows), GPU
    out = [f"# Capacity plan: {title}", "",
           f"Estimates from lensflow.core.capacity's formulas, not measurements. GPU: {g['name']}, bf16 dense peak "
           f"{g['bf16_tflops']} TFLOP/s at {MFU:.0%} sustained ({g['bf16_tflops'] * MFU:.0f} "
           f"TFLOP/s); decoding at {BW_EFF:.0%} of {g['hbm_tbps']} TB/s or {STEP_S * 1000:.0f} ms a "
           "step, whichever is slower. Disk: what the job writes (upper bounds from the config where the data "
           "decides). Host and GPU: the job's peak.", "",
           f"**Total: {s['jobs']} estimated jobs, {size(s['disk'])} written, {s['hours']:.1f} GPU-hours; largest host "
           f"peak {s['host']['host']:.1f} GB ({s['host']['rule']}), largest GPU peak {s['gpu']['gpu']:.1f} GB "
           f"({s['gpu']['rule']}).** Within 2 TB of disk: {yes(s['disk'] <= 2000)}; every job within 80 GB of GPU "
           f"memory: {yes(s['gpu']['gpu'] <= 80)} and 64 GB of host memory: {yes(s['host']['host'] <= 64)}. "
           "Jobs not listed (data preparation, concept mining, tables, figures, statistics, remote LLM calls) "
           "load no model and hold small tables; `declared mem_mb` is what the rules ask for (a SLURM "
           "profile's default applies to rules that declare none).", "", "## Per job kind", "",
           line(["job kind", "jobs", "disk written", "peak host GB", "declared mem_mb (GB)", "peak GPU GB",
                 "GPU-hours", "GPU it needs"]), line(["---"] * 8)]
    for rule, rs in group(rows, lambda r: r["rule"]).items():
        t = summary(rs)
        out.append(line([rule, t["jobs"], size(t["disk"]), f"{t['host']['host']:.1f}", declared(rs),
                         f"{t['gpu']['gpu']:.1f}", f"{t['hours']:.2f}", card(t["gpu"]["gpu"])]))
    out += ["", "## Per job kind and model", "",
            line(["job kind", "model", "jobs", "disk written", "peak host GB", "peak GPU GB", "GPU-hours", "largest job"]),
            line(["---"] * 8)]
    for (rule, model), rs in group(rows, lambda r: (r["rule"], base(r["wildcards"].get("model", "")))).items():
        t = summary(rs)
        out.append(line([rule, model or "-", t["jobs"], size(t["disk"]), f"{t['host']['host']:.1f}",
                         f"{t['gpu']['gpu']:.1f}", f"{t['hours']:.2f}", t["gpu"]["note"] or t["host"]["note"]]))
    if alt:
        out += ["", "## Not in this DAG: the other ExpertLens path, smaller DPO footprints", "",
                line(["option", "model", "jobs", "disk written", "peak host GB", "peak GPU GB", "GPU-hours",
                      "GPU it needs"]), line(["---"] * 8)]
        for (rule, model), rs in group(alt, lambda r: (r["rule"], base(r["wildcards"]["model"]))).items():
            t = summary(rs)
            out.append(line([rule, model, t["jobs"], size(t["disk"]), f"{t['host']['host']:.1f}",
                             f"{t['gpu']['gpu']:.1f}", f"{t['hours']:.2f}", card(t["gpu"]["gpu"])]))
    return "\n".join(out) + "\n"
