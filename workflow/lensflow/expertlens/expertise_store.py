"""The expertise table on disk, streamed: one module at a time in, one row group at a time out.

At paper scale (Pythia-12B, every linear layer: ~1.7M units) an expertise table of 100 concepts
has ~170M rows; as one pandas frame that is tens of GB, and a pivot to the [concept, unit] AP
matrix doubles it. So the writer takes per-module tables (concept-major inside a module) and
appends each as a row group, accumulating the expert counts (additive over modules), the expert
locations and each concept's max AP on the way; the reader fills the float32 AP matrix row group
by row group and reads the rows of a few concepts with a Parquet filter. Memory: one module's
table plus the [n_concepts, n_units] matrix (100 x 1.7M x 4 B = 0.7 GB).

File layout: columns SCHEMA; metadata (lensflow key) = the caller's meta plus `concepts` (sorted),
`modules` ([[name, n_units], ...] in row-group order), `max_ap` ({concept: max AP}), n_concepts, n_units.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lensflow.core.io import META_KEY, TableError, atomic_path, read_metadata

from .expertise import count_above

SCHEMA = pa.schema([("concept", pa.string()), ("module", pa.string()), ("layer", pa.int64()), ("kind", pa.string()),
                    ("unit", pa.int64()), ("ap", pa.float32()), ("off_mean", pa.float32()),
                    ("on_p50", pa.float32()), ("on_p90", pa.float32())])


def _location(table: pd.DataFrame, taus) -> pd.DataFrame:
    """Experts per (tau, layer, kind) in one module's table (no fractions yet)."""
    rows = [table[table["ap"] > tau].groupby(["layer", "kind"]).size().rename("n_experts").reset_index()
            .assign(tau=tau) for tau in taus]
    return pd.concat(rows, ignore_index=True)


def write_expertise(tables: Iterable[pd.DataFrame], path, meta: dict, grid, taus) -> dict:
    """Stream per-module expertise tables into `path` (atomically) and summarise them on the way.

    tables: one DataFrame per module with the columns of SCHEMA, all concepts, units 0..d-1 (any
      row order: the reader places rows by concept and unit).
    grid: thresholds of the count curve; taus: thresholds of the location table.
    Returns {"counts": DataFrame(concept, tau, n_experts) (units with AP > t, as
    expertise.count_above), "location": DataFrame(tau, layer, kind, n_experts, fraction),
    "concepts", "modules", "max_ap", "n_units"}.
    """
    grid = np.asarray(grid, dtype=np.float64)
    counts: dict[str, np.ndarray] = {}
    max_ap: dict[str, float] = {}
    locations, modules, concepts = [], [], None
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, SCHEMA)
        try:
            for table in tables:
                names = sorted(table["concept"].unique())
                if concepts is None:
                    concepts = names
                elif names != concepts:
                    raise ValueError(f"module {table['module'].iloc[0]!r} has concepts {names[:5]}..., "
                                     f"the first module had {concepts[:5]}...")
                module = str(table["module"].iloc[0])
                modules.append([module, int(table["unit"].max()) + 1])
                for concept, g in table.groupby("concept", sort=True):
                    ap = g["ap"].to_numpy()
                    counts[concept] = counts.get(concept, 0) + count_above(ap, grid)
                    max_ap[concept] = max(max_ap.get(concept, -np.inf), float(np.nanmax(ap)))
                locations.append(_location(table, taus))
                writer.write_table(pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False))
            if concepts is None:
                raise ValueError("no module to write: the expertise table would be empty")
            extra = {"concepts": concepts, "modules": modules, "max_ap": max_ap, "n_concepts": len(concepts),
                     "n_units": sum(d for _, d in modules)}
            writer.add_key_value_metadata({META_KEY: json.dumps({**meta, **extra}, sort_keys=True, default=str)})
        finally:
            writer.close()
    counts_df = pd.concat([pd.DataFrame({"concept": c, "tau": grid, "n_experts": counts[c]}) for c in concepts],
                          ignore_index=True)
    location = pd.concat(locations, ignore_index=True).groupby(["tau", "layer", "kind"], as_index=False)["n_experts"].sum()
    total = location.groupby("tau")["n_experts"].transform("sum")
    location["fraction"] = location["n_experts"] / total.where(total > 0)
    return {"counts": counts_df, "location": location, "concepts": concepts, "modules": modules, "max_ap": max_ap,
            "n_units": sum(d for _, d in modules)}


def _layout(path) -> tuple[list[str], list[list]]:
    meta = read_metadata(path)
    if "concepts" not in meta or "modules" not in meta:
        raise TableError(f"{path}: no concepts/modules in its metadata; not an expertise table written by "
                         "lensflow.expertlens.expertise_store")
    return meta["concepts"], meta["modules"]


def read_ap_matrix(path) -> tuple[list[str], np.ndarray]:
    """(concepts, AP float32 [n_concepts, n_units], as stored), units in the file's module order, read one row
    group at a time (only the concept, module, unit and ap columns)."""
    concepts, modules = _layout(path)
    offset = dict(zip((m for m, _ in modules), np.cumsum([0] + [d for _, d in modules])[:-1]))
    ap = np.full((len(concepts), sum(d for _, d in modules)), np.nan, dtype=np.float32)  # [c, units]
    pf = pq.ParquetFile(path)
    names = pa.array(concepts)
    for i in range(pf.num_row_groups):
        rg = pf.read_row_group(i, columns=["concept", "module", "unit", "ap"])
        row = pc.index_in(rg["concept"], value_set=names).to_numpy(zero_copy_only=False)  # [rows]
        mods = rg["module"].unique().to_pylist()
        if len(mods) != 1 or mods[0] not in offset:
            raise TableError(f"{path}: row group {i} holds modules {mods[:3]}, expected one of the metadata's")
        col = offset[mods[0]] + rg["unit"].to_numpy()
        ap[row, col] = rg["ap"].to_numpy()
    if np.isnan(ap).any():
        raise TableError(f"{path}: {int(np.isnan(ap).sum())} (concept, unit) cells have no AP")
    return concepts, ap


def read_concepts(path, concepts, columns=None) -> pd.DataFrame:
    """The rows of the given concepts only (a Parquet filter: the other row data is skipped)."""
    return pq.read_table(path, columns=columns, filters=[("concept", "in", list(concepts))]).to_pandas()


def max_ap(path) -> pd.Series:
    """Each concept's highest AP over all units (from the metadata the writer left)."""
    meta = read_metadata(path)
    if "max_ap" not in meta:
        raise TableError(f"{path}: no max_ap in its metadata; not an expertise table written by "
                         "lensflow.expertlens.expertise_store")
    return pd.Series(meta["max_ap"], name="ap").rename_axis("concept")
