"""Prepare one registry data set as a Parquet table with lensflow metadata.

Snakemake rule `prepare_data`: params.name, params.spec, params.seed -> output[0].
"""

from lensflow.core import data, io
from lensflow.core.runtime import setup_logging


def main(sm):
    log = setup_logging(sm.log[0])
    df, meta = data.prepare(sm.params.spec, sm.params.name, seed=sm.params.seed)
    io.write_table(df, sm.output[0], meta)
    log.info("prepared %s: %d rows (%s)%s", sm.params.name, len(df), meta["kind"],
             " [synthetic]" if meta["synthetic"] else "")
    if meta.get("markup_stripped"):  # recorded in the table's metadata too (data.prepare)
        log.info("%s: HTML markup stripped from %d texts", sm.params.name, meta["n_markup_stripped"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
