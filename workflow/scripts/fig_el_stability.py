"""Figure: stability of ExpertLens similarities across models and across data sets.

Snakemake rule `fig_el_stability`: input[0] stability table; params.measures, params.dpi -> output.png, output.pdf.
"""

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.figures.stability import plot_stability


def main(sm):
    setup_logging(sm.log[0])
    plot_stability(io.read_table(sm.input[0]), sm.output.png, sm.output.pdf, measures=sm.params.measures,
                   dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
