"""Fit and test the probe of one tuned model (LFP §3.3-4.1): ridge on the deltas for VADER (Kendall
per word, Xavier baseline, sign accuracy, error vs generation frequency), logistic for hh / toxic.

Snakemake rule `lfp_probe`: input.data (probe_data Parquet), input.words (VADER: the tuned policy's
lexicon-word counts); params: model, task, kind, test_fraction, n_sample_words, seed ->
output.predictions (every row with split and prediction), output.measures (measure, value, ci_low,
ci_high, p, n), output.words (per-word test table; empty for hh/toxic).
"""

import numpy as np
import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.probes.evaluate import evaluate_logistic, evaluate_regression


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    data = io.read_table(sm.input.data)
    X = np.stack(data.pop("codes").to_numpy())  # [n, d]
    if p.kind == "vader":
        counts = None
        if sm.input.words:
            w = io.read_table(sm.input.words[0], required=["word", "count_tuned"])
            counts = w.rename(columns={"count_tuned": "count"})[["word", "count"]]
        res = evaluate_regression(X, data, test_fraction=p.test_fraction, seed=p.seed, word_counts=counts,
                                  n_sample_words=p.n_sample_words)
    else:
        res = evaluate_logistic(X, data, test_fraction=p.test_fraction, seed=p.seed)
    meta = {"model": p.model, "task": p.task, "kind": p.kind, "seed": p.seed, "test_fraction": p.test_fraction}
    io.write_table(res["predictions"], sm.output.predictions, meta)
    io.write_table(res["measures"].assign(model=p.model, task=p.task), sm.output.measures, meta)
    words = res["words"] if res["words"] is not None else pd.DataFrame(columns=["word", "word_value", "prediction"])
    if res["frequency"] is not None:
        words = words.merge(res["frequency"][["word", "count"]], on="word", how="left")
    io.write_table(words, sm.output.words, {**meta, "sampled_words": list(res["sampled"]["word"])
                                            if res["sampled"] is not None else []})
    for _, r in res["measures"].iterrows():
        log.info("%s/%s %s = %.4g [%.4g, %.4g] p=%.3g n=%s", p.model, p.task, r["measure"], r["value"],
                 r["ci_low"], r["ci_high"], r["p"], r["n"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
