"""Checks on a finished (or killed) workflow run's `results/`: content hashes, completeness, seeds.

`content_hashes` digests what tables *say*, not their bytes: Parquet schema metadata (which holds
timings) is left out, and so are the columns listed in VOLATILE (wall-clock times).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Columns that measure time, not results: {file name: [columns]}.
VOLATILE = {"train_log.tsv": ["elapsed_s", "step_time"]}
SKIP_DIRS = ("logs", "benchmarks")  # written progressively by design / by Snakemake itself
PNG_END = b"IEND\xaeB`\x82"


def _digest_array(h, arr: pa.Array) -> None:
    t = arr.type
    h.update(str(t).encode())
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        h.update(pc.list_value_length(arr).to_numpy(zero_copy_only=False).tobytes())
        _digest_array(h, pc.list_flatten(arr))
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        h.update(np.ascontiguousarray(arr.to_numpy(zero_copy_only=False)).tobytes())
        h.update(np.asarray(arr.is_null()).tobytes())
    else:
        h.update(json.dumps(arr.to_pylist(), default=str).encode())


def table_digest(table: pa.Table, drop: list[str] = ()) -> str:
    """sha256 over column names, types and values (schema metadata ignored)."""
    h = hashlib.sha256()
    for name in table.column_names:
        if name in drop:
            continue
        h.update(name.encode())
        _digest_array(h, table[name].combine_chunks())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    drop = VOLATILE.get(path.name, [])
    if path.suffix == ".parquet":
        return table_digest(pq.read_table(path), drop)
    if path.suffix in (".csv", ".tsv"):
        df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        return table_digest(pa.Table.from_pandas(df.drop(columns=[c for c in drop if c in df]), preserve_index=False))
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        h = hashlib.sha256()
        for k, v in sorted(load_file(path).items()):
            h.update(k.encode() + str(v.dtype).encode() + str(v.shape).encode() + v.tobytes())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()  # Markdown tables


def result_files(results: Path, suffixes=(".parquet", ".csv", ".tsv", ".md", ".safetensors")) -> list[Path]:
    """Visible result files (logs and benchmarks excluded), sorted."""
    out = []
    for p in sorted(results.rglob("*")):
        rel = p.relative_to(results)
        if rel.parts[0] in SKIP_DIRS or any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file() and p.suffix in suffixes:
            out.append(p)
    return out


def content_hashes(results: Path) -> dict[str, str]:
    return {str(p.relative_to(results)): file_digest(p) for p in result_files(results)}


def incomplete_files(results: Path) -> list[str]:
    """Every visible output under `results/` that is not a whole file of its kind (empty list: all fine)."""
    bad = []
    for p in result_files(results, suffixes=(".parquet", ".csv", ".tsv", ".md", ".json", ".png", ".pdf",
                                             ".safetensors")):
        try:
            if p.suffix == ".parquet":
                pq.read_table(p)
            elif p.suffix in (".csv", ".tsv"):
                pd.read_csv(p, sep="\t" if p.suffix == ".tsv" else ",")
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".png":
                data = p.read_bytes()
                assert data.startswith(b"\x89PNG") and data.endswith(PNG_END), "truncated PNG"
            elif p.suffix == ".pdf":
                assert b"%%EOF" in p.read_bytes()[-1024:], "truncated PDF"
            elif p.suffix == ".safetensors":
                from safetensors.numpy import load_file

                load_file(p)
            elif p.stat().st_size == 0:
                raise ValueError("empty")
        except Exception as e:  # noqa: BLE001 (any failure to read is the finding)
            bad.append(f"{p}: {type(e).__name__}: {e}")
    for cfg in results.rglob("config.json"):  # model folders: all or nothing
        folder = cfg.parent
        if any(part.startswith(".") for part in folder.relative_to(results).parts):
            continue
        if not (folder / "lensflow_model.json").is_file() or not any(folder.glob("*.safetensors")):
            bad.append(f"{folder}: model folder without manifest or weights")
    return bad


def leftovers(results: Path) -> list[str]:
    """Hidden temporary files/folders of atomic writes (`.<name>.*`) still under `results/`."""
    return sorted(str(p) for p in results.rglob(".*") if p.name != ".snakemake_timestamp"
                  and p.relative_to(results).parts[0] not in SKIP_DIRS)


def planned_jobs(output: str) -> dict:
    """{rule: count} from a dry-run's job-stats table ({} when there is nothing to be done)."""
    jobs, on = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
        elif on and line.strip() and not line.startswith("-"):
            name, *count = line.split()
            if name == "total":
                break
            jobs[name] = int(count[0])
    return jobs
