"""Two whole runs of the tiny config, shared by the tests in this folder (each ~3-4 min on 2 cores).

`clean_run`: one uninterrupted run. `resumed_run`: a second run with the same seed that is killed
with SIGKILL (the whole Snakemake process group) twice, in the middle of an activation-cache job
and in the middle of a fine-tuning job, and resumed each time the way README.md says
(`snakemake --unlock`, then `snakemake --rerun-incomplete`). What was seen right after each kill
is kept in `resumed_run.kills` for the tests to check (`kill("cache")`, `kill("training")`).
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from failure_logs import failure_report
from run_checks import incomplete_files
from workflow_helpers import ROOT, SNAKEMAKE, copy_config, snakemake, tiny_workdir

CORES = "2"


@dataclass
class Run:
    work: Path
    config: Path
    kills: list = field(default_factory=list)  # one dict per kill: what was running, what was left

    def kill(self, what: str) -> dict:
        return next(k for k in self.kills if k["what"] == what)

    @property
    def results(self) -> Path:
        return self.work / "results"


def _cmd(run: Run, *args) -> list[str]:
    return [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(run.work), "--configfile",
            str(run.config), *args]


def _processes_in(folder: Path) -> list[str]:
    """Command lines of live processes that mention `folder` (the killed run's jobs, if any survived)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmd:
                found.append(f"{proc.name}: {cmd[:300]}")
    return found


def run_and_kill(run: Run, patterns: dict[str, str], timeout: float = 900) -> dict:
    """Start `snakemake --rerun-incomplete` in its own process group; as soon as a path matching one
    of `patterns` ({what: glob under the work folder}) exists, SIGKILL the whole group."""
    log = open(run.work / f"killed-run-{len(run.kills)}.log", "w")
    proc = subprocess.Popen(_cmd(run, "--cores", CORES, "--rerun-incomplete"), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    t0, hits = time.monotonic(), []
    while not hits:
        for what, pattern in patterns.items():
            hits = glob.glob(str(run.work / pattern))
            if hits:
                break
        if not hits and (proc.poll() is not None or time.monotonic() - t0 > timeout):
            log.close()
            raise AssertionError(f"the run ended (rc {proc.returncode}) before anything matched {patterns}:\n"
                                 + Path(log.name).read_text()[-4000:])
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    time.sleep(0.5)
    return {"what": what, "pattern": pattern, "hits": hits, "seconds": round(time.monotonic() - t0, 1),
            "survivors": _processes_in(run.work), "incomplete": incomplete_files(run.results),
            "existing": sorted(str(p.relative_to(run.work)) for p in run.results.rglob("*") if p.is_file())}


def resume(run: Run, *args):
    """The documented way back after a kill: release the lock, then rerun what is incomplete."""
    unlock = subprocess.run(_cmd(run, "--unlock"), capture_output=True, text=True)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    return snakemake(run.work, "--cores", CORES, "--rerun-incomplete", *args, configfile=run.config)


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory) -> Run:
    work = tiny_workdir(tmp_path_factory.mktemp("clean"))
    run = Run(work, copy_config(work))
    res = snakemake(work, "--cores", CORES, configfile=run.config)
    assert res.returncode == 0, failure_report(res, work)
    return run


# A job is in the middle of its work while its atomic temporary exists: the activation cache
# writes `.<name>.parquet.<random>.tmp` next to its output; training appends to train_log.tsv.partial.
IN_PROGRESS = {"cache": "results/activations/*/*/.*.parquet.*.tmp",
               "training": "results/finetune/*/*/train_log.tsv.partial"}


@pytest.fixture(scope="session")
def resumed_run(tmp_path_factory) -> Run:
    work = tiny_workdir(tmp_path_factory.mktemp("resumed"))
    run = Run(work, copy_config(work))
    # whichever kind of job runs first is killed first (the order of the DAG's jobs varies), then the other
    run.kills.append(run_and_kill(run, IN_PROGRESS))
    unlock = subprocess.run(_cmd(run, "--unlock"), capture_output=True, text=True)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    run.kills.append(run_and_kill(run, {k: v for k, v in IN_PROGRESS.items() if k != run.kills[0]["what"]}))
    res = resume(run)
    assert res.returncode == 0, failure_report(res, work)
    return run
