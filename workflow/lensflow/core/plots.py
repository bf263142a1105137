"""Plot plumbing shared by every lensflow figure: atomic PNG+PDF output, the "no data" figure, CIs.

Each figure function elsewhere (expertlens/figures/, lfp/figures/) takes tidy DataFrames plus a PNG
and a PDF path and returns nothing. They all draw inside `new_figure`, which
  - uses the Agg backend (set before pyplot is imported: rules run on headless nodes),
  - writes both files through temporary siblings renamed into place only when both are complete,
    so a crashed job never leaves a plausible-looking half figure for Snakemake to accept,
  - closes the figure whatever happens (long workflows otherwise leak figures).
Common style keywords accepted by every figure function: title (str; "" for none), figsize
((w, h) inches), dpi (PNG resolution, default 150). Anything else is a TypeError, so a typo in
a rule surfaces instead of being ignored.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (must come after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import clear_stale  # noqa: E402

DPI = 150
PALETTE = list(plt.get_cmap("tab10").colors)  # colour-blind-friendly categorical colours
STYLE_KEYS = ("title", "figsize", "dpi")

plt.rcParams.update({
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType so text in the PDF stays editable/searchable
})


def output_paths(stem) -> tuple[Path, Path]:
    """(<stem>.png, <stem>.pdf) for an output path stem."""
    stem = Path(stem)
    return stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")


def save_figure(fig, png_path, pdf_path, dpi: int = DPI) -> None:
    """Write `fig` as PNG (at `dpi`) and PDF; on any error neither new file nor a temp file remains.

    Both are rendered to temporary names in the target folders first and renamed only after both
    succeeded, so the two outputs of a rule always come from the same figure. The figure is closed.
    """
    pending = []  # (temporary path, final path)
    try:
        for path, fmt in ((Path(png_path), "png"), (Path(pdf_path), "pdf")):
            path.parent.mkdir(parents=True, exist_ok=True)
            clear_stale(path)  # a killed earlier render's temporary file
            # a fresh name that savefig creates itself, so the file gets the usual umask permissions
            # (mkstemp would leave it readable by its owner only); .tmp, so the format is explicit
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
            pending.append((tmp, path))
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        for tmp, path in pending:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


def style_options(style: dict, **defaults) -> dict:
    """Merge the caller's style keywords over a figure's defaults; reject unknown keywords."""
    unknown = set(style) - set(STYLE_KEYS)
    if unknown:
        raise TypeError(f"unknown style keyword(s) {sorted(unknown)}; accepted: {list(STYLE_KEYS)}")
    return {"title": None, "figsize": (6.4, 4.8), "dpi": DPI, **defaults, **style}


@contextmanager
def new_figure(png, pdf, nrows: int = 1, ncols: int = 1, *, title=None, figsize=(6.4, 4.8), dpi=DPI,
               **subplots_kw):
    """Yield (fig, axes[nrows, ncols]); on a clean exit add the title and save both files.

    The figure is closed on every path out, including an exception while drawing.
    """
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **subplots_kw)
    try:
        yield fig, axes
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, png, pdf, dpi=dpi)
    finally:
        plt.close(fig)


def no_data_figure(png, pdf, reason: str, **style) -> None:
    """A placeholder figure saying "no data: <reason>", so a rule with nothing to plot still succeeds."""
    opts = style_options(style, figsize=(6.4, 3.0))
    with new_figure(png, pdf, **opts) as (fig, axes):
        ax = axes[0, 0]
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no data: {reason}", ha="center", va="center", transform=ax.transAxes,
                fontsize=12, wrap=True)


def is_empty(df) -> bool:
    """True for None or a frame without rows."""
    return df is None or len(df) == 0


def require_columns(df: pd.DataFrame, columns, what: str) -> None:
    """Raise a ValueError naming the table and the missing columns (clearer than a KeyError mid-plot)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; has {list(df.columns)}")


def grouped_bars(ax, table, *, group: str, series: str, value: str, groups, order, colour: dict,
                 horizontal: bool = False) -> None:
    """Bars of `value` for each group (axis position) and series (side by side, colour[series]),
    with CI whiskers from the ci_low / ci_high columns; a missing (group, series) leaves a gap."""
    width = 0.8 / len(order)
    for i, name in enumerate(order):
        r = table[table[series] == name].set_index(group).reindex(groups)
        pos = np.arange(len(groups)) + (i - (len(order) - 1) / 2) * width  # [n_groups]
        if horizontal:
            ax.barh(pos, r[value], height=width, color=colour[name], label=name)
        else:
            ax.bar(pos, r[value], width=width, color=colour[name], label=name)
        ci_whiskers(ax, pos, r["ci_low"], r["ci_high"], horizontal=horizontal, capsize=2)


def ci_whiskers(ax, pos, low, high, *, horizontal: bool = False, color="black", capsize: float = 4.0,
                lw: float = 1.0) -> None:
    """Draw CI whiskers from `low` to `high` at positions `pos` (vertical unless `horizontal`).

    Drawn as explicit segments rather than errorbar(): a percentile bootstrap interval need not
    contain the point estimate, and errorbar() refuses the negative lengths that would imply.
    Caps are markers (sized in points), so they look the same on linear and log axes.
    Positions with a NaN bound are skipped.
    """
    pos, low, high = (np.asarray(v, dtype=float).ravel() for v in (pos, low, high))
    ok = np.isfinite(low) & np.isfinite(high) & np.isfinite(pos)
    pos, low, high = pos[ok], low[ok], high[ok]
    if pos.size == 0:
        return
    ends = np.r_[low, high]
    if horizontal:
        ax.hlines(pos, low, high, color=color, lw=lw, zorder=3)
        ax.plot(ends, np.r_[pos, pos], ls="none", marker="|", ms=capsize * 2, mew=lw, color=color, zorder=3)
    else:
        ax.vlines(pos, low, high, color=color, lw=lw, zorder=3)
        ax.plot(np.r_[pos, pos], ends, ls="none", marker="_", ms=capsize * 2, mew=lw, color=color, zorder=3)


def format_count(n) -> str:
    """A parameter count as people write it: 70M, 1.4B, 12B."""
    n = float(n)
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return f"{n:.0f}"


def hide_unused(axes, used: int) -> None:
    """Turn off the axes of a grid beyond the first `used` (panels are filled row-major)."""
    for ax in np.ravel(axes)[used:]:
        ax.set_axis_off()


def panel_grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, cols) for n panels, at most max_cols wide."""
    cols = max(1, min(n, max_cols))
    return int(np.ceil(max(n, 1) / cols)), cols


def ordered_values(values, first=()):
    """Unique values, those listed in `first` leading in that order, the rest sorted."""
    present = list(dict.fromkeys(values))
    return [v for v in first if v in present] + sorted((v for v in present if v not in first), key=str)


def category_colours(n):
    """n categorical colours: tab10 while it suffices (colour-blind friendly), tab20 beyond."""
    return PALETTE[:n] if n <= 10 else [plt.get_cmap("tab20")(i % 20) for i in range(n)]
