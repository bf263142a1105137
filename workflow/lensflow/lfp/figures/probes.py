"""Figures of the LFP probes: |error| vs generation frequency (paper Fig. 4) and PCA of the probe
inputs (Fig. 5). Same conventions as finetune.py (PNG + PDF, "no data" figure when empty)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensflow.core.plots import PALETTE, is_empty, new_figure, no_data_figure, style_options


def plot_error_vs_frequency(words: pd.DataFrame, png, pdf, *, rho=None, p=None, **style) -> None:
    """One dot per held-out word: |prediction - lexicon value| against the tuned policy's count of it."""
    if is_empty(words) or "count" not in words:
        return no_data_figure(png, pdf, "no per-word predictions with generation counts", **style)
    err = (words["prediction"] - words["word_value"]).abs()
    with new_figure(png, pdf, **style_options(style)) as (fig, axes):
        ax = axes[0, 0]
        ax.scatter(words["count"] + 1, err, s=14, alpha=0.6, color=PALETTE[0])
        ax.set_xscale("log")
        ax.set_xlabel("times the tuned policy generated the word + 1 (log)")
        ax.set_ylabel("|probe prediction - VADER value|")
        if rho is not None:
            ax.set_title(f"Spearman rho = {rho:.2f} (p = {p:.2g}, {len(words)} words)", fontsize=9)


def plot_probe_pca(coords: np.ndarray, labels: pd.Series, explained, png, pdf, **style) -> None:
    """The probe inputs on their first two principal components, coloured by polarity."""
    if coords is None or len(coords) == 0:
        return no_data_figure(png, pdf, "no probe inputs", **style)
    with new_figure(png, pdf, **style_options(style)) as (fig, axes):
        ax = axes[0, 0]
        for colour, polarity in zip(PALETTE, ["positive", "negative"]):
            m = (labels == polarity).to_numpy()
            ax.scatter(coords[m, 0], coords[m, 1], s=10, alpha=0.6, color=colour, label=polarity)
        ax.set_xlabel(f"PC1 ({explained[0]:.1%} of variance)")
        ax.set_ylabel(f"PC2 ({explained[1]:.1%} of variance)")
        ax.legend(fontsize=8)
