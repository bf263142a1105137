"""Every job's wall time, CPU time and peak memory from the benchmark files, per rule and per job,
with the machine this ran on.

Snakemake rule `job_times`: params.folder (the benchmark files), params.patterns (rule -> benchmark
pattern), params.own (this rule's own benchmark file, left out), params.logs (the logs folder the
benchmark files mirror: exact CPU time from each job's usage line), params.seed -> output.rules,
output.jobs, output.machine (CSV, in the report), output.md, output.parquet.
"""

import math

import pandas as pd

from lensflow.core.io import atomic_path, write_table
from lensflow.core.job_times import collect, markdown, per_rule, summary
from lensflow.core.machine import describe, machine_line
from lensflow.core.runtime import setup_logging


def _plain(records):
    """NaN -> None, for JSON metadata."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]


def write_csv(df, path):
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def main(sm):
    log = setup_logging(sm.log[0])
    machine = describe()
    line = machine_line(machine)
    log.info(line)
    jobs = collect(sm.params.folder, dict(sm.params.patterns), exclude=[sm.params.own], logs=sm.params.logs)
    for s in jobs.attrs.get("skipped", []):
        log.warning("left out, not a benchmark file: %s", s)
    rules, totals = per_rule(jobs), summary(jobs)
    log.info("%d jobs, %.0f s of wall time in all; slowest rule %s", totals["jobs"], totals["wall_s"],
             rules["rule"].iloc[0] if len(rules) else "-")
    write_csv(rules.round(4), sm.output.rules)
    write_csv(jobs.round(4), sm.output.jobs)
    write_csv(pd.DataFrame({"field": ["machine", *machine],
                            "value": [line, *(", ".join(v) if isinstance(v, list) else v for v in machine.values())]}),
              sm.output.machine)
    with atomic_path(sm.output.md) as tmp:
        tmp.write_text(markdown(rules, jobs, totals, line, folder=sm.params.folder))
    write_table(jobs, sm.output.parquet, {
        "what": "per-job wall time, CPU time and peak memory from Snakemake benchmark files",
        "source": sm.params.folder, "machine": machine, "machine_line": line, "totals": totals,
        "per_rule": _plain(rules.to_dict("records")), "skipped": jobs.attrs.get("skipped", []),
        "seed": sm.params.seed,
    })


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
