"""Print the capacity plan of a config: per job kind, disk written, peak host and GPU memory, GPU-hours.

    .venv/bin/python workflow/scripts/capacity_plan.py --configfile config/paper.yaml [--out plan.md]

Several --configfile are deep-merged in order, as Snakemake does (e.g. paper.yaml + an overlay). The
jobs are those of `snakemake -n` over the whole DAG (run in an empty temporary folder, offline), the
estimates lensflow.core.capacity's (formulas and assumptions in its docstring). Markdown on stdout (and
in --out): totals, one row per job kind, one per job kind and model, and what is not in this DAG
(the ExpertLens path not taken, smaller DPO footprints of 1B+ models); lensflow.core.capacity_report
writes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow"))

from lensflow.core import capacity  # noqa: E402
from lensflow.core.capacity_report import DryRunError, dry_run, markdown, merged  # noqa: E402
from lensflow.core.config import validate_config  # noqa: E402
from lensflow.core.model_sizes import jobs_of_dry_run  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configfile", nargs="+", required=True, help="config file(s), deep-merged in order")
    ap.add_argument("--out", help="also write the markdown here")
    ap.add_argument("--dry-run-output", help="parse this saved `snakemake -n` printout instead of running it")
    a = ap.parse_args(argv)
    cfg = validate_config(merged(a.configfile), source=", ".join(a.configfile))
    try:
        text = Path(a.dry_run_output).read_text() if a.dry_run_output else dry_run(ROOT / "Snakefile", a.configfile)
    except DryRunError as e:
        sys.exit(str(e))
    rows, alt = capacity.plan(cfg, jobs_of_dry_run(text))
    md = markdown(", ".join(a.configfile), rows, alt)
    if a.out:
        Path(a.out).write_text(md)
    print(md, end="")


if __name__ == "__main__":
    main()
