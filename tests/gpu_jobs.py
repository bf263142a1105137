"""Reading Snakemake's printout for tests/gpu_check.py: which jobs ran, with which resources and logs,
how each ended, and which device each GPU job's log says it used.

Snakemake prints a block per job (`rule NAME:` or `localrule NAME:`, then indented `output: ...`,
`log: ...`, `jobid: N`, `wildcards: ...`, `resources: tmpdir=/tmp, gpu=1, ...`), `Finished jobid: N`
when one ends well, and an `Error in rule NAME:` block with `jobid: N` when one fails (also for the
jobs it kills after `Terminating processes on user request`). lensflow.core.runtime.pick_device logs one
line `device: cuda (job gpu=1, threads=N)` or `device: cpu (job gpu=0, ...)` per job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

JOB_HEAD = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")
ERROR_HEAD = re.compile(r"^Error in rule (\S+):$")
FINISHED = re.compile(r"^Finished job(?:id:)? (\d+)")
INTERRUPT = "Terminating processes on user request"  # after it, errors are the jobs Snakemake killed
DEVICE = re.compile(r"device: (cuda|cpu)\b")
PREFER = {"model": "pythia-70m", "task": "hh", "dataset": "mined"}  # which job of a rule goes first


@dataclass
class Job:
    jobid: int
    rule: str
    output: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    wildcards: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    status: str = "started"  # started (or planned, in a dry-run) | finished | failed | interrupted

    @property
    def gpu(self) -> float:
        try:
            return float(self.resources.get("gpu", 0))
        except ValueError:
            return 0.0


def _items(value: str) -> list[str]:
    value = value.removesuffix(" (check log file(s) for error details)")
    return [v for v in value.split(", ") if v]


def parse_jobs(text: str) -> dict[int, Job]:
    """Every job block Snakemake printed, by jobid, with its status from `Finished jobid: N` and
    `Error in rule X:` ... `jobid: N` blocks (`interrupted` once Snakemake was told to stop)."""
    jobs: dict[int, Job] = {}
    block: dict | None = None
    stopping = False
    for line in text.splitlines():
        stopping = stopping or line.startswith(INTERRUPT)
        head, err, done = JOB_HEAD.match(line), ERROR_HEAD.match(line), FINISHED.match(line)
        if head or err:
            block = {"rule": (head or err).group(1), "error": bool(err)}
        elif done and int(done.group(1)) in jobs:
            jobs[int(done.group(1))].status = "finished"
        elif block is not None and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            block[key] = value
            if key == "jobid" and block["error"]:
                job = jobs.setdefault(int(value), Job(int(value), block["rule"]))
                job.status = "interrupted" if stopping else "failed"
            elif key == "jobid":
                jobs[int(value)] = job = Job(int(value), block["rule"], _items(block.get("output", "")),
                                             _items(block.get("log", "")))
                block["job"] = job
            elif key in ("wildcards", "resources") and "job" in block:
                setattr(block["job"], key, dict(kv.split("=", 1) for kv in _items(value) if "=" in kv))
        elif not line.startswith("    "):
            block = None
    return jobs


def log_device(path: Path) -> str | None:
    """'cuda' or 'cpu' from the log's `device: ...` line(s); 'mixed' if both; None if none."""
    found = set(DEVICE.findall(path.read_text(errors="replace"))) if path.is_file() else set()
    return found.pop() if len(found) == 1 else ("mixed" if found else None)


def check_gpu_jobs(jobs: dict[int, Job], workdir: Path) -> list[dict]:
    """One row per job with gpu>0 that finished or failed: its device and the problem, if any."""
    rows = []
    for job in sorted(jobs.values(), key=lambda j: j.jobid):
        if job.gpu <= 0 or job.status not in ("finished", "failed"):
            continue
        devices = {log: log_device(workdir / log) for log in job.logs}
        seen = {d for d in devices.values() if d}
        device = seen.pop() if len(seen) == 1 else ("mixed" if seen else None)
        problem = (None if device == "cuda" else "no log declared" if not job.logs
                   else "no device line in its log" if device is None else f"log says {device}")
        rows.append({"rule": job.rule, "jobid": job.jobid, "status": job.status, "wildcards": job.wildcards,
                     "logs": job.logs, "device": device, "problem": problem})
    return rows


def covering_targets(planned: dict[int, Job]) -> dict[str, str]:
    """rule -> one output of one of its jobs, for every rule with gpu>0 (the job matching PREFER most)."""
    best: dict[str, tuple[int, str]] = {}
    for job in planned.values():
        if job.gpu > 0 and job.output:
            score = sum(job.wildcards.get(k) == v for k, v in PREFER.items())
            if job.rule not in best or score > best[job.rule][0]:
                best[job.rule] = (score, job.output[0])
    return {rule: out for rule, (_, out) in sorted(best.items())}
