"""`snakemake --report report.html` on the tiny run: one HTML file holding every figure and table
declared with report(), each with its own file's content and its caption."""

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
def report(clean_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    res = snakemake(clean_run.work, "--report", str(out), configfile=clean_run.config)
    assert res.returncode == 0, failure_report(res, clean_run.work)
    text = out.read_text()
    m = re.search(r'<script id="results">\s*var results = (\{.*?\});?\s*</script>', text, re.S)
    assert m, "no results block in the report"
    return json.loads(m.group(1))


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
