"""Result tables as CSV (for machines) and Markdown (for people), written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .io import atomic_path, read_metadata


def write_csv_md(df: pd.DataFrame, csv_path, md_path, title: str = "", floatfmt: str = ".4g") -> None:
    """Write the same table twice; the Markdown copy gets an optional title line."""
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(md_path) as tmp:
        body = df.to_markdown(index=False, floatfmt=floatfmt)
        Path(tmp).write_text((f"# {title}\n\n" if title else "") + body + "\n")


def inventory(model_dirs: dict[str, str], data_paths: dict[str, str]) -> pd.DataFrame:
    """One row per materialised model and prepared data set: what it is and where it came from."""
    rows = []
    for name, folder in model_dirs.items():
        m = json.loads((Path(folder) / "lensflow_model.json").read_text())
        src = m["source"]
        rows.append({
            "type": "model", "name": name, "kind": m["architecture"],
            "source": src["source"], "origin": src.get("id") or src.get("package") or src.get("path"),
            "revision": src.get("revision", ""), "size": m["n_params"],
            "synthetic": False, "substitute_for": "",
        })
    for name, path in data_paths.items():
        meta = read_metadata(path)
        src = meta["source"]
        rows.append({
            "type": "data", "name": name, "kind": meta["kind"],
            "source": src["source"], "origin": src.get("id") or f"{src.get('package', '')}/{src.get('path', '')}".strip("/"),
            "revision": src.get("revision", ""), "size": meta["n_rows"],
            "synthetic": meta["synthetic"], "substitute_for": meta.get("substitute_for") or "",
        })
    return pd.DataFrame(rows)
