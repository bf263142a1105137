"""The L1 sweep of one tuned model's SAEs (LFP Fig. 8): held-out FVU and L0 against alpha.

Snakemake rule `fig_lfp_l1_sweep` (only for runs that train the sweep, lfp.ablations.tasks):
input.metrics (every SAE variant of the run); params.dpi -> output.png, output.pdf.
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.figures.sae import plot_l1_sweep


def main(sm):
    setup_logging(sm.log[0])
    metrics = pd.concat([io.read_table(f) for f in sm.input.metrics], ignore_index=True)
    plot_l1_sweep(metrics, sm.output.png, sm.output.pdf, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
