"""Single-figure reruns: editing one figure's options (`figures.<name>.dpi`) reruns that figure's
job and nothing else; editing the shared `figures.dpi` reruns every figure (the control)."""

import re
import shutil

import pytest
import yaml

from failure_logs import failure_report
from run_checks import planned_jobs
from workflow_helpers import ROOT, snakemake

pytestmark = pytest.mark.slow


def figure_rules() -> dict[str, str]:
    """{fig_<name>: the rule's text} for every figure rule of the workflow."""
    rules = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            m = re.match(r"\s*rule (fig_\w+):", block)
            if m:
                rules[m.group(1)] = block
    return rules


def test_every_figure_rule_takes_its_own_options():
    """figures.<name>.dpi must reach fig_<name>: each figure rule passes dpi=fig_dpi("<name>")."""
    rules = figure_rules()
    assert {"fig_el_scaling", "fig_lfp_training"} <= set(rules)
    wrong = [r for r, text in rules.items() if f'dpi=fig_dpi("{r[len("fig_"):]}")' not in text]
    assert wrong == []


@pytest.fixture(scope="module")
def run_copy(clean_run, tmp_path_factory):
    """A copy of the finished tiny run (mtimes and .snakemake metadata kept), free to change."""
    work = tmp_path_factory.mktemp("partial") / "work"
    shutil.copytree(clean_run.work, work, symlinks=True)
    return work


def edited_config(work, name, edit):
    cfg = yaml.safe_load((work / "tiny.yaml").read_text())
    edit(cfg["figures"])
    path = work / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))  # as a person edits it: keys stay in order
    return path


def plan(work, config):
    """{rule: jobs} a dry-run plans, without `all` (the default target's no-op job, planned whenever
    anything below it is)."""
    res = snakemake(work, "-n", "--cores", "1", configfile=config)
    assert res.returncode == 0, failure_report(res, work)
    jobs = planned_jobs(res.stdout)
    jobs.pop("all", None)
    return jobs


def test_unchanged_config_plans_nothing(run_copy):
    assert plan(run_copy, run_copy / "tiny.yaml") == {}


def test_one_figure_option_reruns_only_that_figure(run_copy):
    config = edited_config(run_copy, "scaling.yaml", lambda f: f.update(el_scaling={"dpi": 72}))
    assert plan(run_copy, config) == {"fig_el_scaling": 1}
    # a figure made once per fine-tuning run: all of its jobs, nothing else
    config_lfp = edited_config(run_copy, "training.yaml", lambda f: f.update(lfp_training={"dpi": 72}))
    assert plan(run_copy, config_lfp) == {"fig_lfp_training": 2}

    png = run_copy / "results/figures/expertlens/scaling.png"
    others = {p: p.stat().st_mtime_ns for p in (run_copy / "results").rglob("*")
              if p.is_file() and p != png and "logs" not in p.parts and "benchmarks" not in p.parts
              and p.name != "scaling.pdf"}
    res = snakemake(run_copy, "--cores", "1", configfile=config)
    assert res.returncode == 0, failure_report(res, run_copy)
    from PIL import Image

    assert round(Image.open(png).info["dpi"][0]) == 72  # the option reached the figure
    assert [p for p, t in others.items() if p.stat().st_mtime_ns != t] == []
    assert plan(run_copy, config) == {}


def test_shared_dpi_reruns_every_figure(run_copy):
    config = edited_config(run_copy, "all.yaml", lambda f: f.update(dpi=f["dpi"] + 1))
    # el_domains draws its figure with its table, so the table's readers (el_tables, el_claims) rerun too
    assert set(plan(run_copy, config)) == set(figure_rules()) | {"el_domains", "el_tables", "el_claims"}


def test_unknown_figure_name_stops_the_workflow(run_copy):
    config = edited_config(run_copy, "typo.yaml", lambda f: f.update(el_scalling={"dpi": 72}))
    res = snakemake(run_copy, "-n", "--cores", "1", configfile=config)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "key 'figures.el_scalling': there is no fig_el_scalling rule" in out, out[-2000:]
