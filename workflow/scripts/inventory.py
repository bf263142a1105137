"""Table of every model and data set this run used: source, size, and whether it is a substitute.

Snakemake rule `inventory`: input.models, input.data, params.models, params.data -> output.csv, output.md.
"""

from lensflow.core.runtime import setup_logging
from lensflow.core.tables import inventory, write_csv_md


def main(sm):
    setup_logging(sm.log[0])
    df = inventory(dict(zip(sm.params.models, sm.input.models)), dict(zip(sm.params.data, sm.input.data)))
    write_csv_md(df, sm.output.csv, sm.output.md, title="Models and data used in this run")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
