"""Figure: alignment vs model size (parameters).

Snakemake rule `fig_el_scaling`: input[0] alignment table; params.models, params.measure, params.dpi
-> output.png, output.pdf.
"""

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.alignment import scaling_table
from lensflow.expertlens.figures.stability import plot_scaling


def main(sm):
    setup_logging(sm.log[0])
    scaling = scaling_table(io.read_table(sm.input[0]), sm.params.models)
    plot_scaling(scaling, sm.output.png, sm.output.pdf, measure=sm.params.measure, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
