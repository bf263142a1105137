"""Top activation records of SAE features: what the explainer sees (paper §3.4, spec item 9).

An explanation is only as good as its evidence, so the records are the exact k largest codes of
each feature over the whole per-token cache, found by streaming the cache (memory is one batch of
rows plus k records per feature, never the corpus). Alongside them come each feature's maximum
activation and activation frequency, the denominators the 0-10 scaling and the later "how often is
a relevant feature active" statistic (Table 7) need.

Ties at equal activation are broken by (text_id, position), so the records do not depend on how
the cache happens to be split into batches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from lensflow.core.io import TableError

TOKEN_COLUMNS = ["text_id", "position", "token_id"]
ENCODE_FLOATS = 2**25  # encode at most this many codes at once (128 MiB of float32)


def _open_token_cache(cache_path, module: str) -> pq.ParquetFile:
    """The cache as a ParquetFile, after checking it is per-token and holds `module`."""
    try:
        pf = pq.ParquetFile(cache_path)
    except (OSError, ValueError) as e:
        raise TableError(f"{cache_path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    if "position" not in names:
        raise TableError(f"{cache_path}: not a per-token activation cache (no position column)")
    if module not in names:
        modules = [n for n in names if n not in TOKEN_COLUMNS]
        raise TableError(f"{cache_path}: no module {module!r}; it holds {modules}")
    return pf


def _encode_features(sae, x: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Codes of the requested features, [rows, n_features], encoding in row chunks to bound memory."""
    param = next(sae.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    chunk = max(1, ENCODE_FLOATS // max(1, int(getattr(sae, "d_hidden", 1))))
    idx = torch.as_tensor(features, device=device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), chunk):
            xb = torch.tensor(x[start : start + chunk], device=device, dtype=torch.float32)  # [chunk, d_in]
            out.append(sae.encode(xb)[:, idx].float().cpu().numpy())  # [chunk, n_features]
    return np.concatenate(out) if out else np.zeros((0, len(features)), np.float32)


def _best(values: np.ndarray, text_ids: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, ordered by (-value, text_id, position)."""
    return np.lexsort((positions, text_ids, -values))[:k]


def _candidates(codes: np.ndarray, k: int) -> list[np.ndarray]:
    """Per feature, the rows that could enter its top k: all rows >= its k-th largest code (ties kept)."""
    if len(codes) <= k:
        return [np.flatnonzero(codes[:, j] > 0) for j in range(codes.shape[1])]
    kth = -np.partition(-codes, k - 1, axis=0)[k - 1]  # [n_features]
    return [np.flatnonzero((codes[:, j] >= kth[j]) & (codes[:, j] > 0)) for j in range(codes.shape[1])]


def top_records(cache_path, module: str, sae, features: list[int], k: int = 10,
                batch_rows: int = 65536) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The k largest activations of each requested SAE feature over a per-token cache.

    Returns (records, stats):
      records: feature, rank (0 = largest), text_id, position, activation — only activations > 0,
               so a feature has fewer than k rows when it fires on fewer than k tokens;
      stats:   feature, max_activation, frequency (fraction of tokens with code > 0), n_tokens —
               one row per requested feature, dead features included (max 0, frequency 0).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    feats = np.array(list(dict.fromkeys(int(f) for f in features)), dtype=np.int64)  # [f], order kept
    d_hidden = int(getattr(sae, "d_hidden", 0)) or None
    if len(feats) == 0 or feats.min() < 0 or (d_hidden is not None and feats.max() >= d_hidden):
        raise ValueError(f"features must be a non-empty list in [0, {d_hidden}), got {list(features)[:10]}")
    pf = _open_token_cache(cache_path, module)
    best_val = [np.zeros(0, np.float32) for _ in feats]  # per feature: [<= k]
    best_tid = [np.zeros(0, np.int64) for _ in feats]
    best_pos = [np.zeros(0, np.int32) for _ in feats]
    max_act, n_pos, n_tokens = np.zeros(len(feats)), np.zeros(len(feats), np.int64), 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["text_id", "position", module]):
        col = batch.column(2)
        x = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)  # [rows, d_in]
        tid = batch.column(0).to_numpy().astype(np.int64)  # [rows]
        pos = batch.column(1).to_numpy().astype(np.int32)  # [rows]
        codes = _encode_features(sae, x, feats)  # [rows, f]
        n_tokens += len(codes)
        if len(codes):
            max_act = np.maximum(max_act, codes.max(axis=0))
            n_pos += (codes > 0).sum(axis=0)
        for j, rows in enumerate(_candidates(codes, k)):
            v = np.concatenate([best_val[j], codes[rows, j]])
            t = np.concatenate([best_tid[j], tid[rows]])
            p = np.concatenate([best_pos[j], pos[rows]])
            keep = _best(v, t, p, k)
            best_val[j], best_tid[j], best_pos[j] = v[keep], t[keep], p[keep]
    records = pd.DataFrame({
        "feature": np.repeat(feats, [len(v) for v in best_val]),
        "rank": np.concatenate([np.arange(len(v), dtype=np.int32) for v in best_val]),
        "text_id": np.concatenate(best_tid),
        "position": np.concatenate(best_pos).astype(np.int32),
        "activation": np.concatenate(best_val).astype(np.float32),
    })
    stats = pd.DataFrame({
        "feature": feats,
        "max_activation": max_act.astype(np.float32),
        "frequency": n_pos / max(n_tokens, 1),
        "n_tokens": np.full(len(feats), n_tokens, dtype=np.int64),
    })
    return records, stats


def token_table(cache_path, text_ids=None) -> pd.DataFrame:
    """(text_id, position, token_id) of a per-token cache, sorted; optionally only some texts.

    Reads only the three id columns, never the activations.
    """
    filters = None if text_ids is None else [("text_id", "in", sorted({int(t) for t in text_ids}))]
    try:
        table = pq.read_table(cache_path, columns=TOKEN_COLUMNS, filters=filters)
    except (OSError, ValueError, KeyError) as e:
        raise TableError(f"{cache_path}: cannot read token ids ({e})") from None
    df = table.to_pandas()
    return df.sort_values(["text_id", "position"], kind="stable").reset_index(drop=True)


def scale_activation(activation: float, max_activation: float) -> int:
    """An activation on the explainer's 0-10 scale (Bills et al. 2023): 10 * a / max, rounded half up."""
    if max_activation <= 0:
        return 0
    return int(min(10, max(0, np.floor(10 * activation / max_activation + 0.5))))


def _record_line(ids: np.ndarray, position: int, tokenizer, window: int, score: int | None) -> str:
    """`... context «token» (score)`: the `window` tokens before `position`, then the marked token
    (without the score when it is None: a detection context, lensflow.lfp.validation.contexts)."""
    start = max(0, position - window)
    context = [int(i) for i in ids[start:position]]
    token = int(ids[position])
    prefix = tokenizer.decode(context, skip_special_tokens=True) if context else ""
    full = tokenizer.decode([*context, token], skip_special_tokens=True)
    piece = full[len(prefix):] if full.startswith(prefix) else ""
    if piece.strip():
        lead, marked = piece[: len(piece) - len(piece.lstrip())], piece.strip()
    else:  # a special or whitespace token, or pieces that do not concatenate
        raw = tokenizer.decode([token], skip_special_tokens=False)
        lead, marked = (" " if prefix else ""), (raw.strip() or raw)
    suffix = "" if score is None else f" ({score})"
    line = ("... " if start > 0 else "") + f"{prefix}{lead}«{marked}»{suffix}".lstrip()
    return line.replace("\r", " ").replace("\n", "\\n")


def format_records(records: pd.DataFrame, tokens: pd.DataFrame, tokenizer, window: int = 8) -> dict[int, str]:
    """Each feature's top records as plain text, one line per record in rank order.

    A line is the `window` tokens before the record's token, then the token marked «like this» and
    its activation scaled to an integer 0-10 relative to the feature's largest record (its max over
    the cache when `records` came from top_records), e.g. `... the movie was «great» (10)`.
    Keys are sorted feature ids; deterministic for equal inputs.
    """
    need = set(records["text_id"].astype(int))
    sub = tokens[tokens["text_id"].isin(need)].sort_values(["text_id", "position"], kind="stable")
    ids = {int(t): g["token_id"].to_numpy() for t, g in sub.groupby("text_id", sort=False)}  # text -> [len]
    missing = need - set(ids)
    if missing:
        raise ValueError(f"token table lacks texts {sorted(missing)[:5]} that the records refer to")
    out = {}
    for feature, g in records.sort_values(["feature", "rank"], kind="stable").groupby("feature", sort=True):
        top = float(g["activation"].max())
        lines = []
        for r in g.itertuples(index=False):
            text = ids[int(r.text_id)]
            if not 0 <= int(r.position) < len(text):
                raise ValueError(f"record position {r.position} outside text {r.text_id} ({len(text)} tokens)")
            score = scale_activation(float(r.activation), top)
            lines.append(_record_line(text, int(r.position), tokenizer, window, score))
        out[int(feature)] = "\n".join(lines)
    return out
