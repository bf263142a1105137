"""Train one SAE variant on every layer of its selection and measure it on held-out texts.

Snakemake rule `lfp_sae`: input.activations (per-token cache), input.layers (layers.json);
params: model, task, variant, settings (width/tied/alpha/layers), lr, batch_size, n_examples,
shuffle_buffer, normalise_inputs, heldout_fraction, min_heldout_tokens, repeat_tokens (false: fewer training tokens than n_examples is an error
naming the keys), linear_l0_fraction (AE_n: lfp.sae.target.l0_fraction, the best linear code with that share of
the dictionary active is measured alongside, lensflow.lfp.sae.linear; other variants: None), seed -> output.saes (safetensors, one SAE per layer), output.metrics (Parquet: one
row per layer), output.history (Parquet: loss curve per layer).
"""

import json

import numpy as np

from lensflow.core import io
from lensflow.core.runtime import pick_device, seed_everything, setup_logging
from lensflow.lfp.sae.data import cache_token_counts, check_training_tokens, split_texts
from lensflow.lfp.sae.model import save_saes
from lensflow.lfp.sae.train import Variant, train_variant


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    seed_everything(p.seed)
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    variant = Variant(**p.settings)
    layers = json.loads(open(sm.input.layers).read())[variant.layers]
    cache_meta = io.read_metadata(sm.input.activations)
    by_layer = dict(zip(cache_meta["layers"], cache_meta["modules"]))
    missing = [layer for layer in layers if layer not in by_layer]
    if missing:
        raise ValueError(f"{sm.input.activations}: no activations for layers {missing} (has {sorted(by_layer)})")
    text_ids, n_tokens = cache_token_counts(sm.input.activations)
    train_ids, heldout_ids = split_texts(text_ids, p.heldout_fraction, seed=p.seed, n_tokens=n_tokens,
                                         min_heldout_tokens=p.min_heldout_tokens)
    n_train_tokens = int(n_tokens[np.isin(text_ids, train_ids)].sum())
    n_heldout_tokens = int(n_tokens[np.isin(text_ids, heldout_ids)].sum())
    if n_heldout_tokens < p.min_heldout_tokens:
        log.warning("only %d held-out tokens (lfp.sae.min_heldout_tokens %d): half of the %d texts", n_heldout_tokens,
                    p.min_heldout_tokens, len(text_ids))
    # n_examples distinct tokens unless lfp.sae.repeat_tokens: stop here, naming the keys, before training
    passes = check_training_tokens(n_train_tokens, len(train_ids), p.n_examples, p.batch_size, p.repeat_tokens,
                                   sm.input.activations)
    log.info("%d training texts with %d tokens (%.2f passes for %d examples), %d held-out texts with %d tokens",
             len(train_ids), n_train_tokens, passes, p.n_examples, len(heldout_ids), n_heldout_tokens)
    saes, metrics, history = train_variant(
        sm.input.activations, {layer: by_layer[layer] for layer in layers}, variant, train_ids, heldout_ids,
        lr=p.lr, batch_size=p.batch_size, n_examples=p.n_examples, shuffle_buffer=p.shuffle_buffer,
        normalise=p.normalise_inputs, seed=p.seed, device=device, linear_l0_fraction=p.linear_l0_fraction)
    meta = {"model": p.model, "task": p.task, "variant": p.variant, **p.settings, "lr": p.lr,
            "batch_size": p.batch_size, "n_examples": p.n_examples, "seed": p.seed, "device": str(device),
            "n_train_texts": len(train_ids), "n_heldout_texts": len(heldout_ids), "n_train_tokens": n_train_tokens,
            "n_heldout_tokens": n_heldout_tokens, "min_heldout_tokens": p.min_heldout_tokens,
            "token_passes": round(passes, 4), "repeat_tokens": p.repeat_tokens,
            "normalise_inputs": p.normalise_inputs}
    metrics = metrics.assign(model=p.model, task=p.task, variant=p.variant)
    io.write_table(metrics, sm.output.metrics, meta)
    io.write_table(history, sm.output.history, meta)
    save_saes(saes, sm.output.saes, meta)
    log.info("%s/%s %s: mean held-out fvu %.3f, L0 %.1f", p.model, p.task, p.variant,
             metrics["heldout_fvu"].mean(), metrics["heldout_l0"].mean())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
