"""ExpertLens domain structure: clustering concepts on 1 - Jaccard, and the concept-graph figure.

Split from results.py (one idea per module); results.py re-exports these names.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.patches import Patch
from scipy.cluster.hierarchy import dendrogram, fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform

from lensflow.core.plots import PALETTE, category_colours, new_figure, no_data_figure, ordered_values, style_options


# --- 4. domain structure ------------------------------------------------------------------------

def _distance(jaccard) -> np.ndarray:
    """1 - Jaccard as a proper distance matrix: symmetric, zero diagonal, NaN treated as unrelated."""
    j = np.asarray(jaccard, dtype=float)
    if j.ndim != 2 or j.shape[0] != j.shape[1]:
        raise ValueError(f"jaccard must be a square [c, c] matrix, got shape {j.shape}")
    d = 1.0 - np.nan_to_num(j, nan=0.0)
    d = np.clip((d + d.T) / 2, 0.0, 1.0)
    np.fill_diagonal(d, 0.0)
    return d


def concept_linkage(jaccard) -> np.ndarray:
    """Average-linkage hierarchical clustering of concepts on distance 1 - Jaccard (scipy linkage)."""
    return linkage(squareform(_distance(jaccard), checks=False), method="average")


def cluster_concepts(names, jaccard, n_clusters: int) -> np.ndarray:
    """Flat cluster labels (1..n_clusters) of the average-linkage tree cut into at most n_clusters.

    Same order as `names`, ready for sklearn's adjusted_rand_score against human categories.
    """
    names = list(names)
    if len(names) != np.shape(jaccard)[0]:
        raise ValueError(f"{len(names)} names for a {np.shape(jaccard)} Jaccard matrix")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if len(names) < 2:
        return np.ones(len(names), dtype=int)
    return fcluster(concept_linkage(jaccard), t=n_clusters, criterion="maxclust")


def mds_layout(distance) -> np.ndarray:
    """2-D classical (Torgerson) MDS coordinates [c, 2] of a distance matrix; a circle if degenerate."""
    d = np.asarray(distance, dtype=float)
    c = d.shape[0]
    centre = np.eye(c) - 1.0 / c
    b = -0.5 * centre @ (d**2) @ centre
    w, v = np.linalg.eigh(b)  # ascending
    w, v = w[::-1][:2], v[:, ::-1][:, :2]
    if c < 3 or not np.any(w > 1e-12):  # all concepts equidistant-ish: nothing to embed
        angle = 2 * np.pi * np.arange(c) / max(c, 1)
        return np.c_[np.cos(angle), np.sin(angle)]
    return v * np.sqrt(np.clip(w, 0.0, None))


def circle_layout(order) -> np.ndarray:
    """Coordinates [c, 2] on the unit circle, clockwise from the top, position k going to order[k]."""
    order = np.asarray(order)
    angle = np.pi / 2 - 2 * np.pi * np.arange(order.size) / max(order.size, 1)
    xy = np.empty((order.size, 2))
    xy[order] = np.c_[np.cos(angle), np.sin(angle)]
    return xy


def plot_domains(names, jaccard, png, pdf, tau: float = 0.5, categories: dict | None = None, *,
                 edge_fraction: float = 0.05, layout: str = "circle", no_data_reason="fewer than two concepts",
                 **style) -> None:
    """Domain structure at one tau: dendrogram (left) and concept graph (right).

    Left: average-linkage clustering on 1 - Jaccard. Right: the concepts with an edge for each of
    the strongest `edge_fraction` of pairs, or the strongest c pairs if that is more (only pairs
    with Jaccard > 0; ties at the cut are all kept; width by Jaccard), laid out either on a
    circle in dendrogram leaf order (layout="circle", the default: labels never collide and domains
    show up as arcs with short chords) or by classical MDS of the distances (layout="mds": geometry
    is faithful, but tight domains collapse onto a point). With `categories` (concept -> human
    category; missing concepts are "other"), labels and nodes are coloured by category.
    """
    style = {"title": f"Concept domains from expert overlap (Jaccard, τ={tau:g})", **style}
    if layout not in ("circle", "mds"):
        raise ValueError(f"layout must be 'circle' or 'mds', got {layout!r}")
    names = [str(n) for n in names]
    if len(names) < 2:
        return no_data_figure(png, pdf, no_data_reason, **style)
    j = np.asarray(jaccard, dtype=float)
    d = _distance(j)
    if len(names) != d.shape[0]:
        raise ValueError(f"{len(names)} names for a {d.shape} Jaccard matrix")
    c = len(names)
    tree = concept_linkage(j)
    cats = ordered_values([categories.get(n, "other") for n in names]) if categories else []
    cat_colour = dict(zip(cats, category_colours(len(cats))))
    colour_of = {n: cat_colour[categories.get(n, "other")] if categories else PALETTE[0] for n in names}
    font = float(np.clip(260 / c, 4, 9))  # shrink labels as concepts multiply
    height = max(5.0, 0.14 * c + 1.5)
    opts = style_options(style, figsize=(height + 6.5, height))
    with new_figure(png, pdf, 1, 2, gridspec_kw={"width_ratios": [5, height]}, **opts) as (fig, axes):
        ax = axes[0, 0]
        dendrogram(tree, labels=names, orientation="right", ax=ax, leaf_font_size=font,
                   color_threshold=0, above_threshold_color="0.35")
        for label in ax.get_yticklabels():
            label.set_color(colour_of[label.get_text()])
        ax.set_xlabel("1 − Jaccard (average linkage)")
        ax.set_title("hierarchical clustering")
        ax.grid(False)

        ax = axes[0, 1]
        xy = circle_layout(leaves_list(tree)) if layout == "circle" else mds_layout(d)
        iu = np.triu_indices(c, k=1)
        vals = np.nan_to_num(j[iu], nan=0.0)
        # top edge_fraction of pairs, but at least one edge per concept so small sets show structure
        k = max(c, int(np.ceil(edge_fraction * vals.size)))
        cut = np.sort(vals)[::-1][min(k, vals.size) - 1]
        keep = (vals >= cut) & (vals > 0)
        if keep.any():
            segs = np.stack([xy[iu[0][keep]], xy[iu[1][keep]]], axis=1)
            w = vals[keep] / vals[keep].max()
            ax.add_collection(LineCollection(segs, linewidths=0.4 + 2.6 * w, colors="0.45", alpha=0.6, zorder=1))
        ax.scatter(xy[:, 0], xy[:, 1], s=24, c=[colour_of[n] for n in names], edgecolors="white",
                   linewidths=0.5, zorder=2)
        for (x, y), n in zip(xy, names):
            if layout == "circle":  # radial labels just outside the circle, never upside down
                deg = np.degrees(np.arctan2(y, x))
                left = x < -1e-9
                ax.text(1.06 * x, 1.06 * y, n, fontsize=font, color=colour_of[n], va="center",
                        ha="right" if left else "left", rotation=deg + 180 if left else deg,
                        rotation_mode="anchor")
            else:
                ax.annotate(n, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=font)
        ax.set_title(f"concept graph: {int(keep.sum())} strongest pairs by Jaccard\n"
                     + ("(MDS layout)" if layout == "mds" else "(circle in dendrogram order)"))
        if layout == "circle":  # fixed room for the radial labels
            ax.set_xlim(-1.3, 1.3)
            ax.set_ylim(-1.3, 1.3)
            ax.set_aspect("equal", adjustable="box")
        else:
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_axis_off()
        if cats:
            ax.legend(handles=[Patch(color=cat_colour[k_], label=k_) for k_ in cats], loc="upper left",
                      bbox_to_anchor=(1.0, 1.0), title="category")
