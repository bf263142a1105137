"""What the SAEs are trained on (LFP §3.2): the tuned model's per-token MLP outputs, streamed.

The per-token cache (lensflow.core.cache, pooling "none") holds one row per real token (padding was
never written) with a fixed-size-list column per MLP module. `TokenBatches` streams one module of
it row group by row group, keeps the rows of the training texts, shuffles them inside a bounded
buffer and yields [batch, d] float32 batches, so memory is set by `shuffle_buffer`, not the cache.
Texts, not tokens, are split into train and held-out: tokens of one text are strongly correlated,
and a token-level split would leak them into the held-out metrics.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lensflow.core.config_checks import lfp_token_shortfall, n_heldout_texts
from lensflow.core.io import TableError


def split_texts(text_ids, heldout_fraction: float, seed: int = 0, n_tokens=None,
                min_heldout_tokens: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, held-out ids): a seeded random share of whole texts is held out (at least one).

    With n_tokens (tokens of each text, aligned with distinct `text_ids`) and min_heldout_tokens,
    further texts of the same seeded order are held out until they hold that many tokens (SAE
    metrics on a few hundred tokens are noise), but never more than half of the texts.
    """
    ids, first = np.unique(np.asarray(text_ids, dtype=np.int64), return_index=True)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 texts to hold some out, got {len(ids)}")
    n_held = n_heldout_texts(len(ids), heldout_fraction)
    order = np.random.default_rng(seed).permutation(len(ids))
    if min_heldout_tokens and n_tokens is not None:
        tokens = np.asarray(n_tokens, dtype=np.int64)[first][order]  # [texts], in held-out order
        enough = int(np.searchsorted(np.cumsum(tokens), min_heldout_tokens) + 1)  # texts reaching the minimum
        n_held = max(n_held, min(enough, len(ids) // 2))
    perm = ids[order]
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _open(path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise TableError(f"{path}: not a readable Parquet file ({e})") from None


def cache_text_ids(path) -> np.ndarray:
    """Distinct text ids of a per-token cache."""
    try:
        ids = pq.read_table(path, columns=["text_id"])["text_id"].to_numpy()
    except (OSError, pa.ArrowException, KeyError) as e:
        raise TableError(f"{path}: cannot read column text_id ({e})") from None
    return np.unique(ids)


def cache_token_counts(path) -> tuple[np.ndarray, np.ndarray]:
    """(distinct text ids, tokens of each) of a per-token cache (one row per real token)."""
    try:
        ids = pq.read_table(path, columns=["text_id"])["text_id"].to_numpy()
    except (OSError, pa.ArrowException, KeyError) as e:
        raise TableError(f"{path}: cannot read column text_id ({e})") from None
    return np.unique(ids, return_counts=True)


def check_training_tokens(n_train_tokens: int, n_train_texts: int, n_examples: int, batch_size: int,
                          repeat_tokens: bool, source) -> float:
    """Passes over the training tokens that n_examples takes (steps x batch / tokens in whole batches).

    Unless `repeat_tokens`, more than one pass is a ValueError naming the config keys that help
    (config_checks.lfp_token_shortfall): the SAE would see some tokens twice while the paper's budget is
    n_examples distinct tokens. An epoch yields only whole batches (TokenBatches drops the rest).
    """
    need = math.ceil(n_examples / batch_size) * batch_size
    usable = n_train_tokens // batch_size * batch_size
    if usable < need and not repeat_tokens:
        have = f"{source} holds {n_train_tokens} tokens of its {n_train_texts} training texts"
        raise ValueError(lfp_token_shortfall(have, need, n_examples, batch_size))
    return need / usable if usable else math.inf


class TokenBatches:
    """Re-iterable stream of shuffled [batch_size, d] float32 batches of one module's tokens.

    Each pass (epoch) reshuffles with seed + epoch. Rows whose text_id is not in `text_ids` are
    skipped. With shuffle=False rows come in file order and the last batch may be short (for
    evaluation); with shuffle=True a short final batch is dropped, as usual for SGD.
    """

    def __init__(self, path, module: str, text_ids=None, batch_size: int = 32, shuffle: bool = True,
                 shuffle_buffer: int = 65536, seed: int = 0, read_rows: int = 8192):
        self.pf = _open(path)
        if module not in self.pf.schema_arrow.names:
            raise TableError(f"{path}: no column {module!r} (columns: {self.pf.schema_arrow.names[:8]}...)")
        self.path, self.module = path, module
        self.keep = None if text_ids is None else np.asarray(text_ids, dtype=np.int64)
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self.buffer = max(int(shuffle_buffer), self.batch_size)
        self.seed, self.read_rows, self.epoch = seed, read_rows, 0
        self.d = self.pf.schema_arrow.field(module).type.list_size

    def _chunks(self):
        for rb in self.pf.iter_batches(batch_size=self.read_rows, columns=["text_id", self.module]):
            col = rb.column(1)
            x = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), self.d)  # [rows, d]
            if self.keep is not None:
                x = x[np.isin(rb.column(0).to_numpy(), self.keep)]
            if len(x):
                yield x.astype(np.float32, copy=False)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        if not self.shuffle:
            pending = np.empty((0, self.d), np.float32)
            for x in self._chunks():
                pending = np.concatenate([pending, x])
                n_full = len(pending) // self.batch_size * self.batch_size
                yield from np.split(pending[:n_full], n_full // self.batch_size) if n_full else []
                pending = pending[n_full:]
            if len(pending):
                yield pending
            return
        held, n_held = [], 0
        for x in self._chunks():
            held.append(x)
            n_held += len(x)
            if n_held >= self.buffer:
                rest = yield from self._drain(np.concatenate(held), rng)
                held, n_held = [rest], len(rest)
        if n_held:
            yield from self._drain(np.concatenate(held), rng)

    def _drain(self, rows: np.ndarray, rng) -> np.ndarray:
        """Yield shuffled full batches of `rows`; return the short remainder for the next buffer."""
        rows = rows[rng.permutation(len(rows))]
        n_full = len(rows) // self.batch_size * self.batch_size
        for start in range(0, n_full, self.batch_size):
            yield rows[start : start + self.batch_size]
        return rows[n_full:]
