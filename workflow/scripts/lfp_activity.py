"""Table 7 (LFP §4.2): how often the task-related features are active on inputs the probe predicts
high, against the average feature.

Snakemake rule `lfp_activity`: input.data (probe codes), input.predictions, input.explanations,
input.detection (per-feature detection scores: a feature counts as related only when the explainer
labels it so AND its explanation beats its random-explanation control); params: model, task,
threshold, seed -> output[0] (one row: rates with bootstrap CIs, n_high, reason, related_note).
"""

import numpy as np
import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.validation.activity import activity_when_high, related_columns
from lensflow.lfp.validation.detection import related_note, restrict_related


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    data, meta = io.read_table(sm.input.data), io.read_metadata(sm.input.data)
    codes = np.stack(data["codes"].to_numpy())  # [n, sum d_hidden]
    pred = io.read_table(sm.input.predictions)["prediction"].to_numpy()
    explanations, scores = io.read_table(sm.input.explanations), io.read_table(sm.input.detection)
    labelled = restrict_related(explanations, scores)
    note = related_note(explanations, scores)
    widths = {int(k): v for k, v in meta["d_hidden"].items()}
    cols = related_columns(meta["layers"], widths, labelled)
    res = activity_when_high(codes, pred, p.threshold, cols, seed=p.seed)
    if not len(cols):
        res["reason"] = "; ".join(x for x in (res["reason"], note) if x)
    io.write_table(pd.DataFrame([{**res, "model": p.model, "task": p.task, "related_note": note}]), sm.output[0],
                   {"model": p.model, "task": p.task, "seed": p.seed, "threshold": p.threshold})
    log.info("%s/%s: %d related features; high inputs %d; related %.3f vs average %.3f (%s); %s", p.model, p.task,
             len(cols), res["n_high"], res["related_rate_high"], res["average_rate_high"], res["reason"], note)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
