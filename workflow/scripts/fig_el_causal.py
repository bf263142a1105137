"""Figure: causal check, probability of the concept word with experts forced vs random units vs none.

Snakemake rule `fig_el_causal`: input (causal summaries, one per model); params.models, params.dpi
-> output.png, output.pdf.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.figures.results import plot_causal


def main(sm):
    setup_logging(sm.log[0])
    summary = pd.concat([io.read_table(p).assign(model=m) for m, p in zip(sm.params.models, sm.input)],
                        ignore_index=True)
    # the figure shows the exact probability of the word; the log-probabilities are in the table
    plot_causal(summary[summary["measure"] == "p"], sm.output.png, sm.output.pdf, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
