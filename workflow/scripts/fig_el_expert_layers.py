"""Figure: where experts sit (relative depth, module kind) as tau rises.

Snakemake rule `fig_el_expert_layers`: input.location (tables), input.models (folders, for depth);
params.models, params.dpi -> output.png, output.pdf.
"""

import json
from pathlib import Path

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.expertlens.figures.results import plot_expert_layers


def main(sm):
    setup_logging(sm.log[0])
    location = pd.concat([io.read_table(p) for p in sm.input.location], ignore_index=True)
    n_layers = {m: json.loads((Path(d) / "lensflow_model.json").read_text())["n_layers"]
                for m, d in zip(sm.params.models, sm.input.models)}
    plot_expert_layers(location, sm.output.png, sm.output.pdf, n_layers=n_layers, dpi=sm.params.dpi)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
