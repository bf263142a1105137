"""Table 7 (LFP §4.2): how often the task-related features are active on inputs the probe predicts
high, against the average feature.

Snakemake rule `lfp_activity`: input.data (probe codes), input.predictions, input.explanations;
params: model, task, threshold, seed -> output[0] (one row: rates with bootstrap CIs, n_high, reason).
"""

import numpy as np
import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.validation.activity import activity_when_high, related_columns


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    data, meta = io.read_table(sm.input.data), io.read_metadata(sm.input.data)
    codes = np.stack(data["codes"].to_numpy())  # [n, sum d_hidden]
    pred = io.read_table(sm.input.predictions)["prediction"].to_numpy()
    labelled = io.read_table(sm.input.explanations).assign(related=lambda d: d["related"].fillna(False))
    widths = {int(k): v for k, v in meta["d_hidden"].items()}
    cols = related_columns(meta["layers"], widths, labelled)
    res = activity_when_high(codes, pred, p.threshold, cols, seed=p.seed)
    io.write_table(pd.DataFrame([{**res, "model": p.model, "task": p.task}]), sm.output[0],
                   {"model": p.model, "task": p.task, "seed": p.seed, "threshold": p.threshold})
    log.info("%s/%s: %d related features; high inputs %d; related %.3f vs average %.3f (%s)", p.model, p.task,
             len(cols), res["n_high"], res["related_rate_high"], res["average_rate_high"], res["reason"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
