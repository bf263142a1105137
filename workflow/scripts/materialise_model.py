"""Materialise one registry model as a plain local folder (safetensors + tokenizer + manifest).

Snakemake rule `materialise_model`: params.name, params.spec -> output[0] (a folder).
"""

from lensflow.core import models
from lensflow.core.runtime import setup_logging


def main(sm):
    log = setup_logging(sm.log[0])
    manifest = models.materialise(sm.params.spec, sm.params.name, sm.output[0])
    log.info("materialised %s: %s, %d layers, %d params", sm.params.name, manifest["architecture"],
             manifest["n_layers"], manifest["n_params"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
