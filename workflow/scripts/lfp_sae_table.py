"""SAE tables: reconstruction and sparsity per variant (Tables 11/12, Fig. 8 input) and overlap per layer.

Snakemake rule `lfp_sae_table`: input.metrics (every variant's metrics Parquet), input.overlap
(per run); params: n_features, target (lfp.sae.target: fvu, l0_fraction) -> output.sae_csv/md,
output.overlap_csv/md, output.sparsity_csv/md (the sparse-code training check, lensflow.lfp.sae.sparsity).
"""

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.tables import write_csv_md
from lensflow.lfp.sae.sparsity import sparsity_check
from lensflow.lfp.sae.tables import overlap_summary, sae_summary


def main(sm):
    log = setup_logging(sm.log[0])
    metrics = pd.concat([io.read_table(f) for f in sm.input.metrics], ignore_index=True)
    summary = sae_summary(metrics)
    write_csv_md(summary, sm.output.sae_csv, sm.output.sae_md, "LFP sparse autoencoders (held-out texts)")
    rows = []
    for path in sm.input.overlap:
        meta, table = io.read_metadata(path), io.read_table(path)
        m = metrics[(metrics.model == meta["model"]) & (metrics.task == meta["task"])]
        small, big = m[m.variant == "n"].iloc[0], m[m.variant == "2n"].iloc[0]
        per_layer = overlap_summary(table, sm.params.n_features, int(small["d_in"]), int(small["d_hidden"]),
                                    int(big["d_hidden"]), chance=meta.get("mmcs_random"))
        rows.append(per_layer.assign(model=meta["model"], task=meta["task"]))
    overlap = pd.concat(rows, ignore_index=True)[["model", "task", *per_layer.columns]]
    write_csv_md(overlap, sm.output.overlap_csv, sm.output.overlap_md, "LFP feature overlap AE_n vs AE_2n")
    target = sm.params.target
    sparsity = sparsity_check(metrics, fvu_max=target["fvu"], l0_fraction_max=target["l0_fraction"])
    write_csv_md(sparsity, sm.output.sparsity_csv, sm.output.sparsity_md,
                 f"LFP SAE training check: AE_n at held-out FVU (total and per dimension) <= {target['fvu']:g} "
                 f"with mean L0 <= {target['l0_fraction']:.0%} of its dictionary, the L1 sweep's best at that sparsity, "
                 "and the best linear code at that L0 (linear_*)")
    log.info("%d SAE variants, %d overlap rows; sparse-code target met on %d of %d AE_n layers", len(summary),
             len(overlap), int(sparsity["meets_target"].sum()), len(sparsity))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
