"""ExpertLens figures of how similarity holds up: across models and data sets (stability), with
model size (scaling) and over training checkpoints (dynamics). Same conventions as results.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensflow.core.plots import (category_colours, ci_whiskers, format_count, grouped_bars, hide_unused, is_empty,
                                 new_figure, no_data_figure, ordered_values, panel_grid, require_columns, style_options)

from ..naming import jaccard_measure, measure_key


STABILITY_TITLES = {"across_models": "across models (dataset fixed)",
                    "across_datasets": "across datasets (model fixed)"}


def plot_stability(stability: pd.DataFrame, png, pdf, *, measures=None, no_data_reason="no stability results",
                   **style) -> None:
    """Spearman rho (CI) between the pairwise-similarity vectors of two models or two datasets.

    One panel per kind; a group of bars per "a vs b | fixed", one bar per measure (all present,
    or those in `measures`).
    """
    style = {"title": "Stability of ExpertLens similarities", **style}
    if not is_empty(stability):
        require_columns(stability, ("kind", "a", "b", "fixed", "measure", "rho", "ci_low", "ci_high", "n"),
                        "stability")
        if measures is not None:
            stability = stability[stability["measure"].isin(list(measures))]
    if is_empty(stability):
        return no_data_figure(png, pdf, no_data_reason, **style)
    df = stability.copy()
    df["group"] = df["a"].astype(str) + " vs " + df["b"].astype(str) + " | " + df["fixed"].astype(str)
    kinds = ordered_values(df["kind"], tuple(STABILITY_TITLES))
    meas = sorted(df["measure"].unique(), key=measure_key)
    colour = dict(zip(meas, category_colours(len(meas))))
    sizes = [df.loc[df["kind"] == k, "group"].nunique() for k in kinds]
    opts = style_options(style, figsize=(7.5, 1.2 * len(kinds) + sum(0.12 * len(meas) * s + 0.2 for s in sizes)))
    with new_figure(png, pdf, len(kinds), 1, sharex=True, gridspec_kw={"height_ratios": sizes},
                    **opts) as (fig, axes):
        for ax, kind in zip(axes[:, 0], kinds):
            g = df[df["kind"] == kind]
            groups = sorted(g["group"].unique(), key=str)
            grouped_bars(ax, g, group="group", series="measure", value="rho", groups=groups, order=meas,
                         colour=colour, horizontal=True)
            n = g.groupby("group")["n"].agg(["min", "max"]).reindex(groups)
            ax.set_yticks(np.arange(len(groups)), [
                f"{grp} (n={lo})" if lo == hi else f"{grp} (n={lo}–{hi})"
                for grp, lo, hi in zip(groups, n["min"], n["max"])], fontsize=7)
            ax.invert_yaxis()
            ax.axvline(0, color="black", lw=0.8)
            ax.set_title(STABILITY_TITLES.get(kind, str(kind)))
            ax.grid(axis="y", visible=False)
        axes[-1, 0].set_xlabel("Spearman ρ between pairwise-similarity vectors (bootstrap CI)")
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="measure")


# --- 6 & 7. alignment vs scale and over training ------------------------------------------------

def _one_measure(df, measure, columns, what, no_data_reason):
    """Rows of `measure` after checking the table, or (None, reason for the "no data" figure)."""
    if is_empty(df):
        return None, no_data_reason
    require_columns(df, columns, what)
    sub = df[df["measure"] == measure]
    if sub.empty:
        return None, f"measure {measure!r} not in table (has {sorted(df['measure'].unique(), key=measure_key)})"
    return sub, None


def plot_scaling(scaling: pd.DataFrame, png, pdf, *, measure: str = jaccard_measure(0.5),
                 no_data_reason="no scaling results", **style) -> None:
    """Alignment (rho, CI) against model size (log x), one line per (dataset, human pair set)."""
    style = {"title": f"Alignment vs model size ({measure})", **style}
    df, why = _one_measure(scaling, measure, ("model", "n_params", "dataset", "measure", "pairs", "rho", "ci_low",
                                              "ci_high"), "scaling", no_data_reason)
    if df is None:
        return no_data_figure(png, pdf, why, **style)
    lines = sorted(df.groupby(["dataset", "pairs"]).groups, key=str)
    opts = style_options(style, figsize=(6.4, 4.4))
    with new_figure(png, pdf, **opts) as (fig, axes):
        ax = axes[0, 0]
        for i, ((dataset, pairs), c) in enumerate(zip(lines, category_colours(len(lines)))):
            g = df[(df["dataset"] == dataset) & (df["pairs"] == pairs)].sort_values("n_params")
            # dodge lines sideways by a few percent so overlapping whiskers stay readable
            x = g["n_params"].to_numpy(float) * 10 ** ((i - (len(lines) - 1) / 2) * 0.02)
            ax.plot(x, g["rho"], marker="o", color=c, label=f"{dataset} · {pairs}")
            ci_whiskers(ax, x, g["ci_low"], g["ci_high"], color=c)
        ax.set_xscale("log")
        ticks = df.groupby("n_params")["model"].agg(lambda s: " / ".join(sorted(set(map(str, s)))))
        ax.set_xticks(ticks.index.to_numpy(float), [f"{m}\n{format_count(n)}" for n, m in ticks.items()],
                      fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel("Spearman ρ with human ratings (bootstrap CI)")
        ax.legend(title="dataset · human pairs")


def plot_dynamics(dynamics: pd.DataFrame, png, pdf, *, measure: str = jaccard_measure(0.5),
                  no_data_reason="no checkpoints configured", **style) -> None:
    """Alignment (rho, CI band) over training steps (symlog x), one line per model.

    One panel per (dataset, human pair set) present.
    """
    style = {"title": f"Alignment over training ({measure})", **style}
    df, why = _one_measure(dynamics, measure, ("model", "step", "dataset", "measure", "pairs", "rho", "ci_low",
                                               "ci_high"), "dynamics", no_data_reason)
    if df is None:
        return no_data_figure(png, pdf, why, **style)
    panels = sorted(df.groupby(["dataset", "pairs"]).groups, key=str)
    models = sorted(df["model"].unique(), key=str)
    colour = dict(zip(models, category_colours(len(models))))
    nr, nc = panel_grid(len(panels), max_cols=2)
    opts = style_options(style, figsize=(6.0 * nc, 4.0 * nr))
    with new_figure(png, pdf, nr, nc, **opts) as (fig, axes):
        for ax, (dataset, pairs) in zip(axes.ravel(), panels):
            p = df[(df["dataset"] == dataset) & (df["pairs"] == pairs)]
            for model in models:
                g = p[p["model"] == model].sort_values("step")
                if g.empty:
                    continue
                ax.fill_between(g["step"], g["ci_low"], g["ci_high"], color=colour[model], alpha=0.2, lw=0)
                ax.plot(g["step"], g["rho"], marker="o", ms=3, color=colour[model], label=model)
            # symlog: step 0/1 and step 143000 both need to be visible
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(left=0)
            ax.set_title(f"{dataset} · {pairs}")
            ax.set_xlabel("training step (symlog)")
            ax.set_ylabel("Spearman ρ with human ratings")
            ax.legend()
        hide_unused(axes, len(panels))


# --- 8. causal check ----------------------------------------------------------------------------
