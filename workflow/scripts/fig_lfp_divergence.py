"""Figure: per-layer divergence between base and tuned model (the paper's Fig. 7), selected layers marked.

Snakemake rule `fig_lfp_divergence`: input.table, input.selection (JSON); params.dpi -> output.png, output.pdf.
"""

import json
from pathlib import Path

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.figures.finetune import plot_divergence


def main(sm):
    setup_logging(sm.log[0])
    selected = json.loads(Path(sm.input.selection).read_text())["highest"]
    plot_divergence(io.read_table(sm.input.table), sm.output.png, sm.output.pdf, selected=selected, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
