"""Figure: alignment over training checkpoints ('<model>@stepN').

Snakemake rule `fig_el_dynamics`: input[0] alignment table; params.measure, params.dpi -> output.png, output.pdf.
"""

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.alignment import dynamics_table
from lensflow.expertlens.figures.stability import plot_dynamics


def main(sm):
    setup_logging(sm.log[0])
    dynamics = dynamics_table(io.read_table(sm.input[0]))
    plot_dynamics(dynamics, sm.output.png, sm.output.pdf, measure=sm.params.measure, dpi=sm.params.dpi,
                  no_data_reason="no checkpoints configured (expertlens.dynamics)")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
