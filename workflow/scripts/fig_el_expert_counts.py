"""Figure: number of experts (units with AP > tau) as tau rises, per model and data set.

Snakemake rule `fig_el_expert_counts`: input (counts tables); params.dpi -> output.png, output.pdf.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.figures.results import plot_expert_counts


def main(sm):
    setup_logging(sm.log[0])
    counts = pd.concat([io.read_table(p) for p in sm.input], ignore_index=True)
    plot_expert_counts(counts, sm.output.png, sm.output.pdf, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
