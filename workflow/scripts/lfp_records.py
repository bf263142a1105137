"""Top activation records of the high-overlap AE_n features (the explainer's input, LFP §3.4).

Snakemake rule `lfp_records`: input.activations (per-token cache), input.saes (AE_n), input.overlap,
input.layers, input.tokenizer (tuned model folder); params: model, n_features, k_records, window,
seed -> output.records (feature records: layer, feature, rank, text_id, position, activation),
output.features (layer, feature, big_feature, cosine, max_activation, frequency, records_text).
"""

import json

import pandas as pd
from transformers import AutoTokenizer

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.sae.model import load_saes
from lensflow.lfp.sae.overlap import explained_features
from lensflow.lfp.validation.records import format_records, token_table, top_records


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    tok = AutoTokenizer.from_pretrained(sm.input.tokenizer)
    saes, _ = load_saes(sm.input.saes)
    layers = json.loads(open(sm.input.layers).read())["highest"]
    cache_meta = io.read_metadata(sm.input.activations)
    module_of = dict(zip(cache_meta["layers"], cache_meta["modules"]))
    overlap = io.read_table(sm.input.overlap)
    all_records, features = [], []
    for layer in layers:
        sae = saes[layer]
        records, stats = top_records(sm.input.activations, module_of[layer], sae, list(range(sae.d_hidden)),
                                     k=p.k_records)
        alive = stats.loc[stats["frequency"] > 0, "feature"]
        chosen = explained_features(overlap[overlap["layer"] == layer], alive, p.n_features)
        log.info("layer %d: %d of %d features ever fire; explaining %d (matched cosine %.3f..%.3f)", layer,
                 len(alive), sae.d_hidden, len(chosen), chosen["cosine"].min() if len(chosen) else float("nan"),
                 chosen["cosine"].max() if len(chosen) else float("nan"))
        mine = records[records["feature"].isin(chosen["small_feature"])]
        tokens = token_table(sm.input.activations, text_ids=mine["text_id"].unique())
        text = format_records(mine, tokens, tok, window=p.window) if len(mine) else {}
        feats = chosen.rename(columns={"small_feature": "feature"}).merge(stats, on="feature")
        features.append(feats.assign(layer=layer, records_text=feats["feature"].map(text)))
        all_records.append(mine.assign(layer=layer))
    meta = {"model": p.model, "seed": p.seed, "k_records": p.k_records, "window": p.window}
    io.write_table(pd.concat(all_records, ignore_index=True), sm.output.records, meta)
    io.write_table(pd.concat(features, ignore_index=True), sm.output.features, meta)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
