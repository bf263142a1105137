"""The Learned Feedback Patterns figures (fine-tuning curves, layer divergence), from tidy tables.

Same conventions as every lensflow figure: plot_x(table, png, pdf, *, options, **style) writes both
files atomically, and an empty table gives a "no data: <reason>" figure instead of an error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensflow.core.plots import PALETTE, is_empty, new_figure, no_data_figure, style_options

# What to draw from each trainer's per-step log: (column, axis label). The first one is the headline.
CURVES = {
    "rl": [("reward_mean", "reward (VADER, per step)"), ("kl", "KL to the reference policy")],
    "dpo": [("rewards/margins", "DPO reward margin (chosen - rejected)"), ("rewards/accuracies", "pair accuracy")],
}


def plot_training(log: pd.DataFrame, kind: str, png, pdf, *, window: int = 5, no_data_reason="empty training log",
                  **style) -> None:
    """Per-step training curves with a rolling mean and a rolling t 95% interval (the reward curve).

    kind: "rl" (RLOO/GRPO log) or "dpo". Columns a trainer did not log are skipped.
    """
    from ..finetune.rl_eval import rolling_reward

    curves = [(c, label) for c, label in CURVES[kind] if c in log.columns and log[c].notna().any()]
    if is_empty(log) or not curves:
        return no_data_figure(png, pdf, no_data_reason, **style)
    opts = style_options(style, figsize=(6.4, 2.6 * len(curves)))
    with new_figure(png, pdf, nrows=len(curves), **opts) as (fig, axes):
        for ax, (col, label) in zip(axes[:, 0], curves):
            r = rolling_reward(log, window=window, column=col)
            ax.plot(r["step"], r["reward"], ".", color=PALETTE[0], alpha=0.5, label="per step")
            ax.plot(r["step"], r["rolling_mean"], color=PALETTE[1], label=f"rolling mean ({window} steps)")
            ax.fill_between(r["step"], r["ci_low"], r["ci_high"], color=PALETTE[1], alpha=0.2, label="95% CI")
            ax.set_ylabel(label)
        axes[-1, 0].set_xlabel("optimizer step")
        axes[0, 0].legend(fontsize=8)


def plot_divergence(divergence: pd.DataFrame, png, pdf, *, selected=(), no_data_reason="no divergence table",
                    **style) -> None:
    """The paper's Fig. 7: per-layer divergence sum ||theta_base - theta_tuned||_F, selected layers marked."""
    if is_empty(divergence):
        return no_data_figure(png, pdf, no_data_reason, **style)
    d = divergence.sort_values("layer")
    colours = [PALETTE[3] if layer in set(selected) else PALETTE[0] for layer in d["layer"]]
    with new_figure(png, pdf, **style_options(style)) as (fig, axes):
        ax = axes[0, 0]
        ax.bar(d["layer"], d["divergence"], color=colours)
        ax.set_xlabel("layer (block)")
        ax.set_ylabel("divergence (sum of Frobenius norms)")
        ax.set_xticks(np.asarray(d["layer"])[:: max(1, len(d) // 15)])
        if len(selected):
            ax.set_title(f"highlighted: the {len(selected)} layers selected downstream", fontsize=9)
