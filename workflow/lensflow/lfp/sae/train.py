"""Train the SAEs of one variant on every selected layer (LFP §3.2, App. F) and measure them.

A *variant* is one row of the paper's SAE experiments: AE_n and AE_2n on the highest-divergence
layers (the main result), and the ablations — an L1 sweep (Fig. 8), untied weights (Table 11),
the lowest-divergence layers (Table 12). Every variant trains on the same cached tokens of the
training texts and is measured on the held-out texts' tokens.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import pandas as pd

from .data import TokenBatches
from .linear import linear_code_metrics
from .metrics import sae_metrics
from .model import train_sae

log = logging.getLogger("lensflow")


@dataclass
class Variant:
    """One SAE configuration; `layers` names the selection in layers.json (highest / lowest)."""

    width: int = 1  # hidden size in multiples of d_in
    tied: bool = True
    alpha: float = 1e-3
    layers: str = "highest"


def train_variant(cache_path, modules: dict[int, str], variant: Variant, train_ids, heldout_ids, *, lr: float,
                  batch_size: int, n_examples: int, shuffle_buffer: int, seed: int, normalise: bool = True,
                  device="cpu", linear_l0_fraction: float | None = None):
    """({layer: SAE}, metrics DataFrame, history DataFrame) for `modules` = {layer: module column}.

    linear_l0_fraction: also measure, per layer, the best linear code with that share of the
    dictionary active (lensflow.lfp.sae.linear; columns linear_k, linear_fvu, linear_fvu_per_dim,
    linear_l0), the reference of the sparse-code check.
    """
    saes, metrics, history = {}, [], []
    n_steps = math.ceil(n_examples / batch_size)
    for layer, module in modules.items():
        # AE_n and AE_2n must start from independent random dictionaries: a shared seed makes
        # the first n rows of AE_2n's Xavier init parallel to AE_n's (same draws, other scale),
        # and the matched cosine (MMCS) would then measure the seed, not learned features.
        init_seed = seed + 1000 * variant.width + layer
        start = time.perf_counter()
        train = TokenBatches(cache_path, module, train_ids, batch_size=batch_size, shuffle_buffer=shuffle_buffer,
                             seed=seed + layer)
        d_in = train.d
        sae, hist = train_sae(train, d_in, variant.width * d_in, tied=variant.tied, alpha=variant.alpha, lr=lr,
                              n_steps=n_steps, device=device, seed=init_seed,
                              log_every=max(1, n_steps // 50), normalise=normalise)
        seconds = time.perf_counter() - start
        heldout = TokenBatches(cache_path, module, heldout_ids, batch_size=4096, shuffle=False)
        m = sae_metrics(sae, heldout)
        linear = {}  # measured on the same held-out tokens; fitted in one more pass over the training tokens
        if linear_l0_fraction is not None:
            once = TokenBatches(cache_path, module, train_ids, batch_size=4096, shuffle=False)
            linear = linear_code_metrics(once, heldout, d_in, sae.d_hidden, linear_l0_fraction, sae.input_scale)
        log.info("layer %d (%s): %d steps in %.1fs; held-out fvu %.3f (per dim %.3f), L0 %.1f, dead %.2f; "
                 "input scale %.4g", layer, module, n_steps, seconds, m["fvu"], m["fvu_per_dim"], m["l0"],
                 m["dead_fraction"], sae.input_scale)
        if linear:
            log.info("layer %d: best linear code at L0 %d (top principal subspace): held-out fvu %.3f "
                     "(per dim %.3f)", layer, linear["linear_k"], linear["linear_fvu"], linear["linear_fvu_per_dim"])
        metrics.append({"layer": layer, "module": module, "d_in": d_in, "d_hidden": sae.d_hidden,
                        "width": variant.width, "tied": variant.tied, "alpha": variant.alpha,
                        "selection": variant.layers, "n_steps": n_steps, "n_examples": n_steps * batch_size,
                        "input_scale": sae.input_scale,
                        **{f"heldout_{k}": v for k, v in m.items()}, **linear})
        # Training time goes to the log (and Snakemake's benchmark file), not the table: the
        # table must be identical run to run (tests/e2e/test_determinism.py).
        history.append(hist.assign(layer=layer))
        saes[layer] = sae.cpu()
    return saes, pd.DataFrame(metrics), pd.concat(history, ignore_index=True)
