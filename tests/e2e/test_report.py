"""`snakemake --report report.html` on the tiny run: one HTML file holding every figure and table
declared with report(), each with its own file's content and its caption, every caption rendered
without a docutils warning or error; the job-times table names the rule of every job the run made."""

import base64
import html
import json
import re

import pytest

from failure_logs import failure_report
from workflow_helpers import ROOT, snakemake

pytestmark = pytest.mark.slow

DECLARED = re.compile(r'report\(\s*"([^"]+)",\s*caption="([^"]+)"', re.S)


def declared_reports():
    """(output pattern, caption file) of every report() in the workflow's rules."""
    found = []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        found += [(pattern, (smk.parent / caption).resolve()) for pattern, caption in DECLARED.findall(smk.read_text())]
    return found


def as_regex(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", pattern)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


def plain(text: str) -> str:
    """Caption text without markup: HTML tags and entities, reST ``literals`` and **emphasis**."""
    text = html.unescape(re.sub(r"<[^>]+>", "", text)).replace("``", "").replace("**", "")
    return " ".join(text.split())


@pytest.fixture(scope="module")
def report_run(clean_run, tmp_path_factory):
    """(Snakemake's result, the report's HTML)."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    res = snakemake(clean_run.work, "--report", str(out), configfile=clean_run.config)
    assert res.returncode == 0, failure_report(res, clean_run.work)
    return res, out.read_text()


@pytest.fixture(scope="module")
def report(report_run):
    m = re.search(r'<script id="results">\s*var results = (\{.*?\});?\s*</script>', report_run[1], re.S)
    assert m, "no results block in the report"
    return json.loads(m.group(1))


# docutils' messages: on stderr as "(ERROR/3) ...", in the HTML as a "system-message" box and a
# "problematic" span (e.g. `|error|` read as an undefined substitution)
DOCUTILS_MESSAGE = re.compile(r"\((?:WARNING|ERROR|SEVERE)/\d\)")
DOCUTILS_HTML = re.compile(r"system-message|class=\\?\"problematic")


def test_report_has_every_declared_output_with_caption(clean_run, report):
    declared = declared_reports()
    assert len(declared) >= 15, declared
    files = [str(p.relative_to(clean_run.work)) for p in (clean_run.work / "results").rglob("*") if p.is_file()]
    for pattern, caption in declared:
        matches = [f for f in files if as_regex(pattern).match(f)]
        assert matches, f"the tiny run made no {pattern}"
        words = " ".join(plain(caption.read_text()).split()[:8])
        for f in matches:
            assert f in report, f"{f} missing from the report"
            assert words in plain(report[f]["caption"]), (f, words, report[f]["caption"][:300])
            data = base64.b64decode(report[f]["data_uri"].split("base64,", 1)[1])
            assert data == (clean_run.work / f).read_bytes(), f"{f}: the report holds other content"


def test_report_misses_no_figure_or_table(clean_run, report):
    results = clean_run.work / "results"
    figures = {str(p.relative_to(clean_run.work)) for p in (results / "figures").rglob("*.png")}
    tables = {str(p.relative_to(clean_run.work)) for p in (results / "tables").glob("*.csv")}
    assert len(figures) > 10 and len(tables) > 5
    assert sorted((figures | tables) - set(report)) == []


def test_every_caption_renders_without_docutils_messages(report_run, report):
    res, html_text = report_run
    assert not DOCUTILS_MESSAGE.search(res.stdout + res.stderr), (res.stdout + res.stderr)[-3000:]
    bad = {f: r["caption"][:500] for f, r in report.items() if DOCUTILS_HTML.search(r["caption"])}
    assert bad == {}
    m = re.search(r"var workflow_desc = (.*?);\n", html_text, re.S)
    assert m and "lensflow reproduces" in m.group(1) and not DOCUTILS_HTML.search(m.group(1))


def test_job_times_table_names_the_rule_of_every_job(clean_run, report):
    import pandas as pd

    bench = clean_run.results / "benchmarks"
    jobs = pd.read_csv(bench / "job_times_jobs.csv")
    files = {str(p.relative_to(clean_run.work)) for p in bench.rglob("*.tsv")} - {"results/benchmarks/job_times.tsv"}
    assert len(files) > 50 and set(jobs["benchmark"]) == files  # every job of the run, nothing else
    rules = set(jobs["rule"])
    assert not any(" or " in r or r.startswith("(") for r in rules), sorted(rules)
    assert {"cache_activations", "lfp_sae", "lfp_base_probe", "fig_el_scaling", "inventory"} <= rules
    # every job's script logged its exact CPU time as it exited (lensflow.core.usage), so none is a sample
    assert (jobs["cpu_source"] == "rusage").all(), jobs.loc[jobs["cpu_source"] != "rusage", "benchmark"].tolist()
    assert (jobs["cpu_s"] > 0).all()
    by_rule = pd.read_csv(bench / "job_times.csv")
    assert list(by_rule["wall_s"]) == sorted(by_rule["wall_s"], reverse=True)
    assert by_rule["jobs"].sum() == len(jobs) and by_rule["wall_share"].sum() == pytest.approx(1.0, abs=1e-3)
    machine = dict(pd.read_csv(bench / "job_times_machine.csv").values)
    assert machine["machine"].startswith("machine: ") and "AVX2" in machine["machine"] and machine["torch"]
    md = (bench / "job_times.md").read_text()
    assert machine["machine"] in md and "## Per rule, by total wall time" in md
    assert "results/benchmarks/job_times.csv" in report and "results/benchmarks/job_times_machine.csv" in report
