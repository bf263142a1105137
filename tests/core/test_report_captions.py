"""Every report caption (workflow/report/*.rst) renders without a docutils warning or error, the way
`snakemake --report` renders it: Jinja first (the global description uses the config), then docutils
to HTML. A stray `|word|` (a substitution), `*` or a bad indent shows up in the report as a red
"System Message" box; tests/e2e/test_report.py checks the built report itself."""

import io
import re
from types import SimpleNamespace

import pytest
import yaml
from docutils.core import publish_parts
from jinja2 import Environment, StrictUndefined

from workflow_helpers import ROOT

CAPTIONS = sorted((ROOT / "workflow" / "report").glob("*.rst"))
MESSAGE = re.compile(r"\((WARNING|ERROR|SEVERE)/\d\)")
CATEGORIES = sorted({c for smk in (ROOT / "workflow" / "rules").glob("*.smk")
                     for c in re.findall(r'category="([^"]+)"', smk.read_text())})
# What Snakemake appends to every caption before docutils sees it (snakemake.report, `rst_links`): a
# link target per panel and per category, so a category named like a panel ("Workflow") is a
# duplicate target and a warning in every caption.
LINKS = """

.. _Workflow: javascript:show_panel('workflow')
.. _Statistics: javascript:show_panel('statistics')
{% for cat in categories %}
.. _{{ cat }}: javascript:app.showCategory('{{ cat|urlencode }}')
{% endfor %}
"""


def render(text: str, categories=CATEGORIES) -> tuple[str, str]:
    """(HTML body, docutils' messages at level WARNING or above) of one caption."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    stand_in = SimpleNamespace(config=config, wildcards={}, params={}, input=[], output=[], log=[], rule="rule")
    rst = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined).from_string(text + LINKS).render(
        snakemake=stand_in, categories=categories, files=[])
    stream = io.StringIO()
    body = publish_parts(rst, writer="html", settings_overrides={
        "report_level": 2, "halt_level": 5, "warning_stream": stream})["body"]
    return body, stream.getvalue()


def test_there_are_captions():
    assert len(CAPTIONS) > 20 and ROOT / "workflow/report/job_times.rst" in CAPTIONS
    assert {"ExpertLens", "Job times"} <= set(CATEGORIES)


@pytest.mark.parametrize("caption", CAPTIONS, ids=lambda p: p.name)
def test_caption_renders_cleanly(caption):
    body, messages = render(caption.read_text())
    assert not MESSAGE.search(messages), f"{caption.name}: {messages}"
    assert "system-message" not in body and "problematic" not in body, body


@pytest.mark.parametrize("text,expected", [
    ("between |error| and the rest", "Undefined substitution"),  # the old lfp_probes.rst
    ("a *dangling emphasis", "Inline emphasis start-string without end-string"),
    ("Title text\n=====\n", "Title underline too short"),
    ("A caption.", 'Duplicate explicit target name: "workflow"'),  # a category named "Workflow"
])
def test_the_check_sees_what_docutils_complains_about(text, expected):
    body, messages = render(text, categories=[*CATEGORIES, "Workflow"] if "Duplicate" in expected else CATEGORIES)
    assert MESSAGE.search(messages) and expected in messages, messages
