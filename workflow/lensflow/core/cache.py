"""The activation cache: run a model over a text table and write chosen module activations to Parquet.

One function serves both pipelines: ExpertLens wants one max-pooled vector per sentence and unit,
LFP wants every token's MLP output for SAE training. Layout of the file (wide, one column per module
so a reader can load one module without touching the rest):

  pooled (max / mean):  text_id | <module 1>: fixed_size_list<float>[d1] | <module 2> ...
  tokens (none):        text_id | position | token_id | <module 1> | ...   (padding excluded)

Rows are written in row groups as batches complete, so memory is bounded by the row-group size and
not the corpus. Pooled caches pool inside each module's hook as the forward runs, so a batch holds
one module's [batch, pos, d] output at a time (plus a [batch, d] row per module), not every
module's. Batches are formed from texts sorted by token length (least padding), longest first so
an out-of-memory error shows up in the first batch, not the last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .hooks import capture, match_modules
from .io import META_KEY, TableError, atomic_path, read_metadata
from .runtime import resolve_bf16_autocast

log = logging.getLogger("lensflow")
FLUSH_BYTES = 64 * 2**20  # flush a row group once this much is buffered, whatever rows_per_group says


@dataclass
class CacheSpec:
    """What to capture: module name patterns, input or output, and how to pool over tokens."""

    modules: list[str]
    hook: str = "output"  # "output" | "input"
    pooling: str = "max"  # "max" | "mean" | "none" (keep every token)
    dtype: str = "float32"  # storage dtype: "float32" | "float16"
    extra: dict = field(default_factory=dict)


def _forward_target(model, names):
    """The base model (no lm_head: a vocab-wide matmul we do not need) unless a hook sits outside it."""
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    if base is not None and all(n.startswith(prefix + ".") for n in names):
        return base
    return model


def pool(act: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool [batch, pos, d] over real tokens only (mask [batch, pos] is True on non-padding)."""
    m = mask.unsqueeze(-1)  # [batch, pos, 1]
    if pooling == "max":
        return act.masked_fill(~m, float("-inf")).amax(dim=1)  # [batch, d]
    if pooling == "mean":
        return (act * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # [batch, d]
    raise ValueError(f"unknown pooling {pooling!r} (expected max, mean or none)")


def _pooling_hook(pooling: str, device_type: str, batch: dict):
    """A `capture` reduce that pools each module's output over the current batch's real tokens
    (batch["mask"]) in float32 with autocast off: the numbers pooling after the forward gave."""
    def reduce(act: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device_type, enabled=False):
            return pool(act.float(), batch["mask"], pooling)  # [batch, d]
    return reduce


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    """[rows, d] -> a fixed-size-list column without copying the numbers again."""
    rows, d = values.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), d)


def cache_activations(model, tokenizer, texts: pd.DataFrame, spec: CacheSpec, out_path, *, batch_size: int = 16,
                      max_length: int = 128, device="cpu", bf16_autocast: bool | str = False,
                      rows_per_group: int = 4096, meta: dict | None = None, source: str | None = None,
                      pool_in_hook: bool = True) -> dict:
    """Run `model` over `texts` (columns text_id, text) and write `spec`'s activations to `out_path`.

    `bf16_autocast`: true / false / "auto" (bf16 only where native on `device`; see
    runtime.resolve_bf16_autocast); what was used, and why, goes in the metadata and the log.
    `source` names where the texts came from (the text table's file) in errors. Returns the
    metadata written into the file. The file appears only when complete. `pool_in_hook=False`
    pools after the forward instead, keeping every module's [batch, pos, d] output until then:
    the old way, same numbers, kept for the memory benchmark and the equality test.
    """
    if spec.pooling not in ("max", "mean", "none"):
        raise ValueError(f"unknown pooling {spec.pooling!r} (expected max, mean or none)")
    if texts.empty:  # the tokenizer would fail on an empty batch with an IndexError that names nothing
        raise ValueError(f"{source or 'the text table'}: no texts to cache (0 rows), so no activations for "
                         f"{out_path}; the step that wrote the table produced no texts (see its log)")
    names = match_modules(model, spec.modules)
    body = _forward_target(model, names)
    np_dtype = np.dtype(spec.dtype)
    ids = tokenizer(list(texts["text"]), truncation=True, max_length=max_length)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    if (lengths == 0).any():
        bad = texts["text_id"].to_numpy()[lengths == 0][:5].tolist()
        raise ValueError(f"texts {bad} tokenize to nothing; cannot cache them")
    text_ids = texts["text_id"].to_numpy(np.int64)
    order = np.argsort(-lengths, kind="stable")  # longest first
    tokenizer.padding_side = "right"  # real tokens keep positions 0..len-1
    precision = resolve_bf16_autocast(bf16_autocast, device)
    log.info("forward precision: %s", precision.reason)
    info = {
        **(meta or {}),
        "modules": names,
        "module_patterns": spec.modules,
        "hook": spec.hook,
        "pooling": spec.pooling,
        "dtype": spec.dtype,
        **precision.meta(),
        "max_length": max_length,
        "batch_size": batch_size,
        "n_texts": len(texts),
        "n_tokens": int(lengths.sum()),
        "device": str(device),
    }
    writer, buffered, nbytes = None, [], 0
    n_batches = -(-len(order) // batch_size)
    device_type = torch.device(device).type
    current: dict[str, torch.Tensor] = {}  # the batch's attention mask, for the pooling hooks
    in_hook = spec.pooling != "none" and pool_in_hook
    reduce = _pooling_hook(spec.pooling, device_type, current) if in_hook else None
    with atomic_path(out_path) as tmp, capture(model, names, spec.hook, reduce) as store, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            if (start // batch_size) % max(1, n_batches // 10) == 0:
                log.info("batch %d/%d", start // batch_size + 1, n_batches)
            idx = order[start : start + batch_size]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            input_ids = batch["input_ids"].to(device)  # [batch, pos]
            mask = batch["attention_mask"].to(device).bool()  # [batch, pos]
            current["mask"] = mask
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision.bf16_autocast):
                # use_cache=False: no KV cache (2 x layers x [batch, pos, d_kv]) that one forward never reads
                body(input_ids=input_ids, attention_mask=mask.long(), use_cache=False)
            if spec.pooling == "none":
                b, p = torch.nonzero(mask, as_tuple=True)  # [n_tok] each
                cols = {
                    "text_id": pa.array(text_ids[idx][b.cpu().numpy()]),
                    "position": pa.array(p.cpu().numpy().astype(np.int32)),
                    "token_id": pa.array(input_ids[b, p].cpu().numpy().astype(np.int32)),
                }
                acts = {n: store[n][b, p] for n in names}  # [n_tok, d]
            elif in_hook:
                cols = {"text_id": pa.array(text_ids[idx])}
                acts = {n: store[n] for n in names}  # [batch, d], pooled by the hooks
            else:
                cols = {"text_id": pa.array(text_ids[idx])}
                acts = {n: pool(store[n].float(), mask, spec.pooling) for n in names}  # [batch, d]
            for n in names:
                cols[n] = _fixed_list(acts[n].float().cpu().numpy().astype(np_dtype, copy=False))
            table = pa.table(cols)
            if writer is None:
                info["widths"] = {n: table.schema.field(n).type.list_size for n in names}
                schema = table.schema.with_metadata({META_KEY: _json(info)})
                # Dictionary encoding only for the id columns: activation values are nearly all
                # distinct, and building (then abandoning) their dictionaries cost ~25% of a
                # per-token run (tests/benchmarks/RESULTS.md).
                id_cols = [c for c in ("text_id", "position", "token_id") if c in cols]
                writer = pq.ParquetWriter(tmp, schema, use_dictionary=id_cols)
            buffered.append(table)
            nbytes += table.nbytes
            if sum(t.num_rows for t in buffered) >= rows_per_group or nbytes >= FLUSH_BYTES:
                writer.write_table(pa.concat_tables(buffered))
                buffered, nbytes = [], 0
            store.clear()
            current.clear()
        if buffered:
            writer.write_table(pa.concat_tables(buffered))
        writer.close()
    log.info("cached %d texts (%d tokens) x %d modules -> %s", len(texts), info["n_tokens"], len(names), out_path)
    return info


def _json(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True, default=str)


def _to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks()
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)


def read_pooled(path, modules: list[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(text_ids [n], {module: [n, d]}) from a pooled cache, rows sorted by text_id."""
    meta = read_metadata(path)
    if meta.get("pooling") not in ("max", "mean"):
        raise TableError(f"{path}: not a pooled activation cache (pooling={meta.get('pooling')!r})")
    modules = modules or meta["modules"]
    try:
        table = pq.read_table(path, columns=["text_id", *modules])
    except (OSError, pa.ArrowException, KeyError) as e:
        raise TableError(f"{path}: cannot read modules {modules[:3]}...: {e}") from None
    order = np.argsort(table["text_id"].to_numpy(), kind="stable")
    return table["text_id"].to_numpy()[order], {m: _to_numpy(table[m])[order] for m in modules}


def iter_token_batches(path, module: str, batch_rows: int = 65536):
    """Stream a per-token cache: yields [rows, d] float32 arrays of one module, row group by row group."""
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise TableError(f"{path}: not a readable Parquet file ({e})") from None
    for batch in pf.iter_batches(batch_size=batch_rows, columns=[module]):
        col = batch.column(0)
        yield col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size).astype(np.float32)
