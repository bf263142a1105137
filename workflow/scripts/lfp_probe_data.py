"""Probe inputs and labels (LFP §3.3): the tuned model's AE_n codes at the selected layers on every
triple element, concatenated over layers, and the activation deltas as labels.

Snakemake rule `lfp_probe_data`: input.model (tuned), input.triples, input.saes (AE_n file),
input.layers; params: model, batch_size, max_length, bf16_autocast (true/false/auto), seed -> output[0]
(Parquet: triple_id, polarity, word, word_value, label, label_raw, codes (fixed-size list)); the forward
precision used, and why, in its metadata (bf16_autocast, bf16_autocast_setting, bf16_autocast_reason).
"""

import json

import numpy as np
import pyarrow as pa

from lensflow.core import io
from lensflow.core.runtime import model_job, resolve_bf16_autocast
from lensflow.lfp.probes.data import probe_codes, probe_dataset
from lensflow.lfp.sae.model import load_saes


def main(sm):
    log, device, model, tok, _ = model_job(sm)
    p = sm.params
    layers = json.loads(open(sm.input.layers).read())["highest"]
    saes, sae_meta = load_saes(sm.input.saes, device=device)
    triples = io.read_table(sm.input.triples)
    precision = resolve_bf16_autocast(p.bf16_autocast, device)  # what probe_codes decides (and logs) too
    codes = probe_codes(model, tok, triples, layers, saes, device=device, batch_size=p.batch_size,
                        max_length=p.max_length, bf16_autocast=p.bf16_autocast)  # [n_rows, sum d_hidden]
    words = triples["word_value"].abs()
    target_max = float(words.max()) if words.notna().any() else 1.0  # rewrite tasks: labels in [-1, 1]
    X, table = probe_dataset(triples, codes, target_max)
    out = pa.Table.from_pandas(table, preserve_index=False).append_column(
        "codes", pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1]))
    widths = {layer: saes[layer].d_hidden for layer in layers}
    io.write_table(out, sm.output[0], {"model": p.model, "layers": layers, "d_hidden": widths, "seed": p.seed,
                                       "target_max": target_max, "sae_variant": sae_meta.get("variant"),
                                       **precision.meta()})
    log.info("%s: %d probe rows x %d features; mean |label_raw| %.3g; active codes per row %.1f", p.model,
             len(table), X.shape[1], np.abs(table["label_raw"]).mean(), (X > 0).sum(1).mean())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
