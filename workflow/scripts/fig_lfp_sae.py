"""Figures of one tuned model's SAEs: training curves and feature overlap (Fig. 3).

Snakemake rule `fig_lfp_sae`: input.histories (every variant of the run), input.overlap; params.dpi -> output.training/overlap (PNG) and their *_pdf twins.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.figures.sae import plot_overlap, plot_sae_training


def main(sm):
    setup_logging(sm.log[0])
    dpi = sm.params.dpi
    history = pd.concat([io.read_table(f).assign(variant=io.read_metadata(f)["variant"]) for f in sm.input.histories],
                        ignore_index=True)
    plot_sae_training(history, sm.output.training, sm.output.training_pdf, dpi=dpi)
    chance = io.read_metadata(sm.input.overlap)["mmcs_random"]  # computed once, by lfp_overlap
    plot_overlap(io.read_table(sm.input.overlap), sm.output.overlap, sm.output.overlap_pdf, chance=chance, dpi=dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
