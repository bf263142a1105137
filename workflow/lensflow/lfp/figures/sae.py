"""Figures of the LFP SAE stage: training curves, the L1 sweep (paper Fig. 8), feature overlap (Fig. 3).

Same conventions as finetune.py: plot_x(table, png, pdf, **style) writes PNG and PDF atomically,
and an empty table gives a "no data: <reason>" figure instead of an error.
"""

from __future__ import annotations

from itertools import cycle

import numpy as np
import pandas as pd

from lensflow.core.plots import PALETTE, hide_unused, is_empty, new_figure, no_data_figure, panel_grid, style_options


def plot_sae_training(history: pd.DataFrame, png, pdf, *, variants=("n", "2n"), **style) -> None:
    """Training MSE (and the L1 term) per step, one panel per layer, one line per variant."""
    h = history[history["variant"].isin(variants)] if not is_empty(history) else history
    if is_empty(h):
        return no_data_figure(png, pdf, "no SAE training history", **style)
    layers = sorted(h["layer"].unique())
    nrows, ncols = panel_grid(len(layers))
    with new_figure(png, pdf, nrows=nrows, ncols=ncols, **style_options(style, figsize=(4 * ncols, 3 * nrows))) as (
        fig, axes):
        for ax, layer in zip(axes.flat, layers):
            for colour, (variant, g) in zip(cycle(PALETTE), h[h["layer"] == layer].groupby("variant", sort=False)):
                ax.plot(g["examples"], g["mse"], color=colour, label=f"AE_{variant} MSE")
            ax.set_yscale("log")
            ax.set_title(f"layer {layer}", fontsize=9)
            ax.set_xlabel("training examples (tokens)")
        axes.flat[0].set_ylabel("reconstruction MSE (train, log)")
        axes.flat[0].legend(fontsize=8)
        hide_unused(axes, len(layers))


def plot_l1_sweep(metrics: pd.DataFrame, png, pdf, **style) -> None:
    """Fig. 8: held-out FVU and mean L0 against the L1 coefficient (AE_n width, highest-divergence
    layers); dots per layer, line = mean over layers, dashed: the targets FVU 0.2 and L0 10% of
    the dictionary. FVU, not the paper's MSE: MSE in model units is not comparable across layers."""
    m = metrics if is_empty(metrics) else metrics[metrics["variant"].eq("n") | metrics["variant"].str.startswith("l1-")]
    if is_empty(m) or m["alpha"].nunique() < 2:
        return no_data_figure(png, pdf, "fewer than two L1 coefficients trained", **style)
    with new_figure(png, pdf, ncols=2, **style_options(style, figsize=(9, 3.6))) as (fig, axes):
        targets = [0.2, 0.1 * float(m["d_hidden"].mean()) if "d_hidden" in m else None]
        for ax, col, label, target in zip(axes[0], ["heldout_fvu", "heldout_l0"],
                                          ["held-out FVU", "mean L0 (active features)"], targets):
            ax.scatter(m["alpha"], m[col], color=PALETTE[0], alpha=0.5, s=12, label="one layer")
            mean = m.groupby("alpha")[col].mean()
            ax.plot(mean.index, mean.values, color=PALETTE[1], marker="o", label="mean over layers")
            if target is not None:
                ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label="target")
            ax.set_xscale("log")
            ax.set_xlabel("L1 coefficient alpha")
            ax.set_ylabel(label)
        axes[0, 0].legend(fontsize=8)


def plot_overlap(overlap: pd.DataFrame, png, pdf, *, chance: float | None = None, **style) -> None:
    """Matched cosine of every AE_n feature with its AE_2n partner, sorted, one line per layer."""
    if is_empty(overlap):
        return no_data_figure(png, pdf, "no overlap table", **style)
    with new_figure(png, pdf, **style_options(style)) as (fig, axes):
        ax = axes[0, 0]
        for colour, (layer, g) in zip(cycle(PALETTE), overlap.groupby("layer")):
            cos = np.sort(g["cosine"].to_numpy())[::-1]
            ax.plot(np.arange(len(cos)), cos, color=colour, label=f"layer {layer} (MMCS {cos.mean():.2f})")
        if chance is not None:
            ax.axhline(chance, color="grey", ls="--", label=f"random dictionaries (MMCS {chance:.2f})")
        ax.set_xlabel("AE_n feature, by matched cosine")
        ax.set_ylabel("cosine with its AE_2n match")
        ax.legend(fontsize=7)
