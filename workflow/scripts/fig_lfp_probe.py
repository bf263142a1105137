"""Figures of one probe: PCA of its inputs (Fig. 5) and, for VADER, |error| vs generation count (Fig. 4).

Snakemake rules `fig_lfp_probe_pca` (input.data -> output.png/pdf) and `fig_lfp_probe_error`
(input.words, input.measures -> output.png/pdf); params: figure ("pca" | "error"), dpi, seed.
"""

import numpy as np

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.figures.probes import plot_error_vs_frequency, plot_probe_pca
from lensflow.lfp.probes.fit import pca_coords


def main(sm):
    setup_logging(sm.log[0])
    p = sm.params
    if p.figure == "pca":
        data = io.read_table(sm.input.data)
        coords, explained = pca_coords(np.stack(data["codes"].to_numpy()), seed=p.seed)
        plot_probe_pca(coords, data["polarity"], explained, sm.output.png, sm.output.pdf, dpi=p.dpi)
        return
    m = io.read_table(sm.input.measures).set_index("measure")
    stat = m.loc["abs_error_vs_generation_count_spearman"] if "abs_error_vs_generation_count_spearman" in m.index \
        else None
    plot_error_vs_frequency(io.read_table(sm.input.words), sm.output.png, sm.output.pdf,
                            rho=None if stat is None else stat["value"], p=None if stat is None else stat["p"],
                            dpi=p.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
