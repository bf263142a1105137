"""Figure: alignment of ExpertLens similarity (and baselines) with human judgments, rho with CIs.

Snakemake rule `fig_el_alignment`: input[0] alignment table; params.dpi -> output.png, output.pdf.
"""

from lensflow import io
from lensflow.plots_expertlens import plot_alignment
from lensflow.runtime import setup_logging


def main(sm):
    setup_logging(sm.log[0])
    plot_alignment(io.read_table(sm.input[0]), sm.output.png, sm.output.pdf, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
