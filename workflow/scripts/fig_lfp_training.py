"""Figure: fine-tuning curves (RL reward and KL, or DPO margin and accuracy) with rolling mean and CI.

Snakemake rule `fig_lfp_training`: input[0] per-step TSV; params.kind ("rl" | "dpo"), params.window,
params.dpi -> output.png, output.pdf.
"""

import pandas as pd

from lensflow.core.runtime import setup_logging
from lensflow.lfp.figures.finetune import plot_training


def main(sm):
    setup_logging(sm.log[0])
    log = pd.read_csv(sm.input[0], sep="\t")
    plot_training(log, sm.params.kind, sm.output.png, sm.output.pdf, window=sm.params.window, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
