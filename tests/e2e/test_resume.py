"""Kill -9 and resume: a run killed in the middle of a caching job and of a training job, then
resumed (`--unlock`, `--rerun-incomplete`), leaves nothing half-written and ends with exactly the
results of an uninterrupted run (the two runs of conftest.py)."""

from pathlib import Path

import pytest

from run_checks import content_hashes, leftovers, planned_jobs
from workflow_helpers import snakemake

pytestmark = pytest.mark.slow


def final_name(tmp: str) -> Path:
    """The output an atomic temporary `.<name>.<random>.tmp` was going to become."""
    p = Path(tmp)
    return p.parent / p.name[1:].rsplit(".", 2)[0]


def test_killed_cache_job_left_no_partial_output(resumed_run):
    kill = resumed_run.kill("cache")
    assert kill["hits"], kill
    assert kill["survivors"] == [], "processes of the killed run still alive"
    assert kill["incomplete"] == [], kill["incomplete"]
    for tmp in kill["hits"]:  # the cache being written at the kill: no file under its name
        out = final_name(tmp).relative_to(resumed_run.work)
        assert out.suffix == ".parquet" and str(out) not in kill["existing"], (out, kill)


def test_killed_training_job_left_no_partial_output(resumed_run):
    kill = resumed_run.kill("training")
    assert kill["hits"] and kill["survivors"] == [] and kill["incomplete"] == [], kill
    for partial in kill["hits"]:
        run_dir = Path(partial).parent.relative_to(resumed_run.work)
        for out in ("model/config.json", "train_log.tsv", "train_meta.json"):
            assert str(run_dir / out) not in kill["existing"], (run_dir / out, kill)


def test_resumed_run_equals_uninterrupted_run(clean_run, resumed_run):
    clean, resumed = content_hashes(clean_run.results), content_hashes(resumed_run.results)
    killed = [final_name(resumed_run.kill("cache")["hits"][0]).relative_to(resumed_run.results)]
    killed += [Path(p).parent.relative_to(resumed_run.results) / "train_log.tsv"
               for p in resumed_run.kill("training")["hits"]]
    for out in killed:  # the killed jobs' own outputs first, for a clear message
        assert resumed[str(out)] == clean[str(out)], out
    assert sorted(resumed) == sorted(clean)
    differ = [k for k in clean if clean[k] != resumed[k]]
    assert not differ, differ


def test_resumed_run_is_complete_and_clean(resumed_run):
    assert leftovers(resumed_run.results) == []  # the killed writes' temporaries were cleared
    again = snakemake(resumed_run.work, "-n", "--cores", "1", configfile=resumed_run.config)
    assert planned_jobs(again.stdout) == {} and "Nothing to be done" in again.stdout + again.stderr
