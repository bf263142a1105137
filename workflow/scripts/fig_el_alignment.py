"""Figure: alignment of ExpertLens similarity (and baselines) with human judgments, rho with CIs.

Snakemake rule `fig_el_alignment`: input[0] alignment table; params.dpi -> output.png, output.pdf.
"""

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.figures.results import plot_alignment


def main(sm):
    setup_logging(sm.log[0])
    plot_alignment(io.read_table(sm.input[0]), sm.output.png, sm.output.pdf, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
