"""Parquet in and out, with lensflow metadata and no half-written files.

Every table a rule writes carries a JSON blob under the schema-metadata key b"lensflow" (what made
it: model, source, seed, ...). Writes go to a temporary name in the same folder and are renamed
into place only when complete, so a killed job never leaves a plausible-looking partial file.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"lensflow"


class TableError(ValueError):
    """A Parquet file that cannot be read as the table a rule expects; the message names the file."""


def with_metadata(table: pa.Table, meta: dict) -> pa.Table:
    """Attach lensflow metadata (JSON) to the table's schema, keeping pandas' own metadata."""
    old = table.schema.metadata or {}
    return table.replace_schema_metadata({**old, META_KEY: json.dumps(meta, sort_keys=True, default=str)})


def clear_stale(path: str | Path) -> None:
    """Delete what killed earlier writes of `path` left behind: its hidden siblings `.<name>.*`.

    Every atomic writer here builds `path` under such a name (file or folder) and renames it; a
    kill -9 leaves it. Snakemake never runs two jobs writing the same output, so any found is stale.
    """
    path = Path(path)
    for stale in map(Path, glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*"))):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling path; on success rename it to `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(df: pd.DataFrame | pa.Table, path: str | Path, meta: dict) -> None:
    """Write a DataFrame/Table to Parquet atomically with lensflow metadata."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(with_metadata(table, meta), tmp)


def read_metadata(path: str | Path) -> dict:
    """The lensflow metadata of a Parquet file ({} if it has none)."""
    try:
        # the file's key-value metadata: the schema's (write_table) or a streaming writer's footer
        md = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as e:
        raise TableError(f"{path}: not a readable Parquet file ({e})") from None
    return json.loads(md[META_KEY]) if META_KEY in md else {}


def read_table(path: str | Path, columns: list[str] | None = None, required: list[str] = ()) -> pd.DataFrame:
    """Read a Parquet table as pandas; a corrupt file or a missing column names the file."""
    try:
        df = pq.read_table(path, columns=columns).to_pandas()
    except FileNotFoundError:
        raise TableError(f"{path}: file not found") from None
    except (OSError, pa.ArrowInvalid, pa.ArrowException) as e:
        raise TableError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}; has {list(df.columns)}")
    return df
