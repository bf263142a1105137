"""The ExpertLens figures, each from tidy tables written by the workflow.

Every plot function has the form plot_x(table(s)..., png, pdf, *, <options>, **style) and returns
nothing; it writes both files atomically (see plots.py) and, when its table is empty, a placeholder
figure saying "no data: <no_data_reason>" (under the figure's usual title) instead of raising.
Style keywords: title, figsize, dpi.

Vocabulary follows the papers: experts are units whose average precision (AP) for a concept exceeds
tau; ExpertLens similarity is the Jaccard of two concepts' expert sets ("jaccard@0.5") or the cosine
of their AP vectors ("cosine_ap"); alignment is Spearman rho against human ratings, with bootstrap CIs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lensflow.core.plots import (category_colours, ci_whiskers, grouped_bars, hide_unused, is_empty, new_figure,
                                 no_data_figure, ordered_values, panel_grid, plt, require_columns, style_options)

from ..naming import measure_key

# the domain-structure figure lives in domains.py; re-exported so callers need one import
from .domains import circle_layout, cluster_concepts, concept_linkage, mds_layout, plot_domains  # noqa: F401

SOURCE_ORDER = ("neurons", "baseline")  # other source types (e.g. "sae") follow, alphabetically


def _text(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


# --- 1. alignment with human judgements ---------------------------------------------------------

ALIGNMENT_COLUMNS = ("source_type", "model", "dataset", "measure", "pairs", "rho", "ci_low", "ci_high", "n")


def _source_label(row) -> str:
    """'model · dataset · measure (n=...)', skipping blanks and repeats (a GloVe baseline has no dataset)."""
    parts = [p for p in (_text(row.model), _text(row.dataset), _text(row.measure)) if p]
    n = f" (n={int(row.n)})" if pd.notna(row.n) else ""
    return " · ".join(dict.fromkeys(parts)) + n


def plot_alignment(alignment: pd.DataFrame, png, pdf, *, no_data_reason="no alignment results", **style) -> None:
    """Spearman rho (bootstrap CI) of each similarity source with each human pair set, one panel per set.

    Bars are coloured by source type (neurons = ExpertLens vs baselines); an optional `ceiling`
    column (inter-human agreement, NaN when unknown) is drawn as a dashed line.
    """
    style = {"title": "ExpertLens alignment with human similarity judgements", **style}
    if is_empty(alignment):
        return no_data_figure(png, pdf, no_data_reason, **style)
    require_columns(alignment, ALIGNMENT_COLUMNS, "alignment")
    df = alignment.copy()
    sources = ordered_values(df["source_type"], SOURCE_ORDER)
    colour = dict(zip(sources, category_colours(len(sources))))
    # rows: neurons first, then baselines; within a type by model, dataset and measure (tau ascending)
    meas_rank = {m: i for i, m in enumerate(sorted(df["measure"].astype(str).unique(), key=measure_key))}
    df = df.assign(_src=df["source_type"].map(sources.index), _model=df["model"].map(_text),
                   _data=df["dataset"].map(_text), _meas=df["measure"].astype(str).map(meas_rank))
    df = df.sort_values(["_src", "_model", "_data", "_meas"], kind="stable")
    pair_sets = sorted(df["pairs"].unique(), key=str)
    tallest = df.groupby("pairs").size().max()
    nr, nc = panel_grid(len(pair_sets), max_cols=2)
    opts = style_options(style, figsize=(6.5 * nc, (1.4 + 0.26 * tallest) * nr))
    with new_figure(png, pdf, nr, nc, **opts) as (fig, axes):
        handles = {}  # one legend for all panels, outside the bars
        for ax, pairs in zip(axes.ravel(), pair_sets):
            g = df[df["pairs"] == pairs]
            y = np.arange(len(g))
            ax.barh(y, g["rho"], color=[colour[s] for s in g["source_type"]], height=0.7)
            ci_whiskers(ax, y, g["ci_low"], g["ci_high"], horizontal=True)
            ax.set_yticks(y, [_source_label(r) for r in g.itertuples()], fontsize=7)
            ax.invert_yaxis()  # first source on top
            ax.axvline(0, color="black", lw=0.8)
            for s in sources:
                if s in set(g["source_type"]):
                    handles[s] = Patch(color=colour[s], label=s)
            if "ceiling" in g.columns:
                for c in g["ceiling"].dropna().unique():
                    ax.axvline(c, color="0.3", ls="--", lw=1)
                    handles["ceiling"] = Line2D([], [], color="0.3", ls="--", label="inter-human ceiling")
            lo = np.nanmin(np.r_[g["ci_low"].to_numpy(float), g["rho"].to_numpy(float), 0.0])
            ax.set_xlim(min(lo - 0.05, -0.05), 1.0)
            ax.set_title(f"human pairs: {pairs}")
            ax.set_xlabel("Spearman ρ with human ratings (bootstrap CI)")
            ax.grid(axis="y", visible=False)
        order = [*sources, "ceiling"]
        ax.legend(handles=[handles[k] for k in order if k in handles], loc="upper left", bbox_to_anchor=(1.01, 1))
        hide_unused(axes, len(pair_sets))


# --- 2. expert counts vs tau --------------------------------------------------------------------

def plot_expert_counts(counts: pd.DataFrame, png, pdf, *, no_data_reason="no expert counts", **style) -> None:
    """Median number of experts per concept (interquartile band over concepts) against tau, log y.

    The y axis shows n_experts + 1 so that concepts with no expert at a high tau stay on the log axis.
    """
    style = {"title": "Experts per concept vs threshold τ (median, IQR over concepts)", **style}
    if is_empty(counts):
        return no_data_figure(png, pdf, no_data_reason, **style)
    require_columns(counts, ("model", "dataset", "concept", "tau", "n_experts"), "counts")
    q = (counts.groupby(["model", "dataset", "tau"])["n_experts"].quantile([0.25, 0.5, 0.75])
         .unstack().sort_index())
    opts = style_options(style, figsize=(6.4, 4.4))
    with new_figure(png, pdf, **opts) as (fig, axes):
        ax = axes[0, 0]
        lines = list(q.groupby(level=["model", "dataset"]))
        for ((model, dataset), g), c in zip(lines, category_colours(len(lines))):
            tau = g.index.get_level_values("tau").to_numpy(float)
            ax.plot(tau, g[0.5] + 1, color=c, lw=1.5, label=f"{model} · {dataset}")
            ax.fill_between(tau, g[0.25] + 1, g[0.75] + 1, color=c, alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("AP threshold τ")
        ax.set_ylabel("experts per concept + 1 (log scale)")
        ax.legend()


# --- 3. where experts sit -----------------------------------------------------------------------

def plot_expert_layers(location: pd.DataFrame, png, pdf, *, n_layers: dict | None = None,
                       no_data_reason="no expert locations", **style) -> None:
    """Fraction of experts per layer against relative depth, one panel per model and a line per tau.

    Relative depth = layer / (n_layers - 1), so models of different depth share the x axis; n_layers
    is taken from `n_layers[model]` or else inferred as the highest layer seen + 1. Fractions are
    recomputed from n_experts (pooled over datasets and module kinds), with layers that have no
    experts shown as 0; units outside any block (layer -1) count in the total but get no point.
    When several module kinds exist, a second row shows the share of each kind per tau (stacked).
    """
    style = {"title": "Where experts sit: layers and module kinds as τ rises", **style}
    if is_empty(location):
        return no_data_figure(png, pdf, no_data_reason, **style)
    require_columns(location, ("model", "tau", "layer", "kind", "n_experts"), "location")
    df = location.copy()
    models = sorted(df["model"].unique(), key=str)
    kinds = sorted(df["kind"].unique(), key=str)
    taus = np.sort(df["tau"].unique().astype(float))
    by_kind = len(kinds) > 1
    # tau colours from viridis, cut short of its top so the highest tau is not a faint yellow
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0, 0.85, 256)))
    norm = Normalize(taus.min(), taus.max() if taus.max() > taus.min() else taus.min() + 1)
    kind_colour = dict(zip(kinds, category_colours(len(kinds))))
    opts = style_options(style, figsize=(4.2 * len(models) + 1.5, 3.6 * (2 if by_kind else 1)))
    with new_figure(png, pdf, 2 if by_kind else 1, len(models), **opts) as (fig, axes):
        for col, model in enumerate(models):
            m = df[df["model"] == model]
            L = max(1, int(n_layers[model]) if n_layers and model in n_layers else int(m["layer"].max()) + 1)
            total = m.groupby("tau")["n_experts"].sum()
            per_layer = m[m["layer"] >= 0].groupby(["tau", "layer"])["n_experts"].sum()
            ax = axes[0, col]
            depth = np.arange(L) / (L - 1) if L > 1 else np.zeros(1)
            for tau in taus:
                if total.get(tau, 0) <= 0:
                    continue  # no experts at this tau: a fraction is undefined
                counts = per_layer.get(tau, pd.Series(dtype=float)).reindex(range(L), fill_value=0)
                ax.plot(depth, counts.to_numpy(float) / total[tau], marker="o", ms=3,
                        color=cmap(norm(tau)), label=f"τ={tau:g}")
            n_data = m["dataset"].nunique() if "dataset" in m.columns else 1
            ax.set_title(f"{model} ({L} layers" + (f", {n_data} datasets pooled)" if n_data > 1 else ")"))
            ax.set_xlabel("relative depth (layer / (layers − 1))")
            ax.set_ylabel("fraction of experts in layer")
            ax.set_xlim(-0.03, 1.03)
            ax.set_ylim(bottom=0)
            if len(taus) <= 8:
                ax.legend(fontsize=7)
            elif col == len(models) - 1:
                fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="τ")
            if not by_kind:
                continue
            ax = axes[1, col]
            share = m.groupby(["tau", "kind"])["n_experts"].sum().unstack(fill_value=0).reindex(columns=kinds,
                                                                                                 fill_value=0)
            share = share[share.sum(axis=1) > 0]
            share = share.div(share.sum(axis=1), axis=0)
            x = np.arange(len(share))
            bottom = np.zeros(len(share))
            for kind in kinds:
                ax.bar(x, share[kind], bottom=bottom, color=kind_colour[kind], width=0.8, label=kind)
                bottom += share[kind].to_numpy()
            ax.set_xticks(x, [f"{t:g}" for t in share.index], rotation=45 if len(x) > 8 else 0)
            ax.set_xlabel("AP threshold τ")
            ax.set_ylabel("fraction of experts by module kind")
            ax.set_ylim(0, 1)
            ax.grid(axis="x", visible=False)
            if col == len(models) - 1:
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)


# --- 5. stability -------------------------------------------------------------------------------

CONDITION_ORDER = ("baseline", "experts", "random")


def plot_causal(summary: pd.DataFrame, png, pdf, *, log: bool | None = None,
                no_data_reason="no intervention results", **style) -> None:
    """Probability of the concept word under each condition (mean, CI), grouped per concept.

    One panel per model. The y axis is logarithmic when `log`, or by default when the positive
    values span two or more orders of magnitude.
    """
    style = {"title": "Causal check: forcing experts vs random units", **style}
    if is_empty(summary):
        return no_data_figure(png, pdf, no_data_reason, **style)
    require_columns(summary, ("model", "concept", "condition", "mean", "ci_low", "ci_high"), "summary")
    df = summary
    models = sorted(df["model"].unique(), key=str)
    conds = ordered_values(df["condition"], CONDITION_ORDER)
    colour = dict(zip(conds, category_colours(len(conds))))
    pos = df["mean"].to_numpy(float)
    pos = pos[np.isfinite(pos) & (pos > 0)]
    if log is None:
        log = pos.size > 1 and pos.max() / pos.min() >= 100
    n_concepts = df.groupby("model")["concept"].nunique().max()
    opts = style_options(style, figsize=(max(6.0, 0.55 * n_concepts + 2), 3.2 * len(models)))
    with new_figure(png, pdf, len(models), 1, **opts) as (fig, axes):
        for ax, model in zip(axes[:, 0], models):
            g = df[df["model"] == model]
            concepts = sorted(g["concept"].unique(), key=str)
            grouped_bars(ax, g, group="concept", series="condition", value="mean", groups=concepts, order=conds,
                         colour=colour)
            ax.set_xticks(np.arange(len(concepts)), concepts, rotation=45 if len(concepts) > 6 else 0,
                          ha="right" if len(concepts) > 6 else "center")
            if log and pos.size:
                ax.set_yscale("log")
                ax.set_ylim(bottom=pos.min() / 3)  # CI ends at or below 0 are clipped here
            ax.set_ylabel("P(concept word)" + (" (log scale)" if log else ""))
            ax.set_title(model)
            ax.grid(axis="x", visible=False)
            if ax is axes[0, 0]:  # same colours in every panel: one legend is enough
                ax.legend(title="forced units", loc="upper left", bbox_to_anchor=(1.01, 1))
