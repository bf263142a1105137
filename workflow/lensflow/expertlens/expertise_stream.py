"""Streaming expertise: per concept, run its sentences through the model, pool on the device,
compute the expertise there (`lensflow.expertlens.expertise_torch`), and keep only the four numbers per unit.

The cached path (`cache_activations` -> `el-units` cache -> `lensflow.expertlens.pipeline.iter_expertise`)
writes every unit's pooled response for the whole sentence bank first: at paper scale (Pythia-12B,
every linear layer: 1.66M units, 6.6 MB of float32 per sentence) terabytes per run. Here nothing
of the responses outlives its concept:

  for each concept (sorted by name):
      its positives and negatives (membership rows, in order), longest first, in batches ->
      hooks pool each module's output over real tokens as the forward runs (`hooks.capture` with
      `reduce`, as `cache.cache_activations` does) -> the concept's block [sentences, units] on
      the device, in the cache's storage dtype (so the numbers are those the cache would hold) ->
      expertise_stats -> [4, units] rows of a float32 scratch array [4, concepts, units] on disk
  then, module by module, the scratch columns -> `expertise_store.write_expertise` (same file,
  same row groups, same counts and location tables as the cached path).

Memory: device = the model + one batch's activations + one concept's block + the kernel's chunk;
host = the sentence table + one module's table at the end (texts are tokenized per concept, so no
token ids of the whole bank); disk (scratch, deleted) = 16 bytes per concept and unit.
Measured flat in the number of sentences: tests/benchmarks/RESULTS.md (bench_expertise_stream.py).
Cost: a sentence is run once per concept that lists it (its own positives, other concepts'
negatives), so ~(n_positive + n_negative) / n_positive forwards per sentence, against one for the
cache. That is the price of never holding the bank.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lensflow.core.cache import CacheSpec, _forward_target, _pooling_hook
from lensflow.core.hooks import capture, match_modules
from lensflow.core.io import TableError
from lensflow.core.runtime import resolve_bf16_autocast

from .expertise_store import write_expertise
from .expertise_torch import DEFAULT_CHUNK_BYTES, expertise_stats
from .pipeline import module_kind, module_layer

log = logging.getLogger("lensflow")
STATS = ("ap", "off_mean", "on_p50", "on_p90")


def _concepts(membership: pd.DataFrame, known: pd.Index, source) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(concept, text_ids [n], positive [n]) per concept, sorted by name, rows in membership order."""
    known = set(known.tolist())
    out = []
    for concept, rows in membership.groupby("concept", sort=True):
        ids = rows["text_id"].to_numpy(np.int64)
        missing = set(ids.tolist()) - known
        if missing:
            raise TableError(f"{source}: no sentence for {len(missing)} text_id(s) of concept {concept!r}")
        out.append((concept, ids, (rows["label"] == "positive").to_numpy()))
    return out


class _Forward:
    """Pools every hooked module over one list of texts: a [n, units] block on the device."""

    def __init__(self, model, tokenizer, spec: CacheSpec, max_length: int, batch_size: int, device, precision):
        self.names = match_modules(model, spec.modules)
        self.body = _forward_target(model, self.names)
        self.model, self.tok, self.spec, self.max_length = model, tokenizer, spec, max_length
        self.batch_size, self.device, self.precision = batch_size, torch.device(device), precision
        self.dtype = getattr(torch, spec.dtype)
        self.widths: list[int] | None = None  # per module, known after the first batch

    def block(self, texts: list[str], text_ids: np.ndarray) -> torch.Tensor:
        """[len(texts), units] pooled responses (rows in the texts' order), spec.dtype, on the device.

        Tokenized here, per concept, as the cache tokenizes (truncation at max_length): a sentence in
        several concepts is tokenized again each time (cheap next to its forward), and memory holds no
        token ids of the whole bank."""
        ids = self.tok(texts, truncation=True, max_length=self.max_length)["input_ids"]
        lengths = np.array([len(x) for x in ids])
        if (lengths == 0).any():
            raise ValueError(f"texts {text_ids[lengths == 0][:5].tolist()} tokenize to nothing; cannot pool them")
        order = np.argsort(-lengths, kind="stable")  # longest first: least padding, as the cache
        current: dict[str, torch.Tensor] = {}
        reduce = _pooling_hook(self.spec.pooling, self.device.type, current)
        self.tok.padding_side = "right"
        out = None
        with capture(self.model, self.names, self.spec.hook, reduce) as store, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
                input_ids = batch["input_ids"].to(self.device)  # [b, pos]
                mask = batch["attention_mask"].to(self.device).bool()  # [b, pos]
                current["mask"] = mask
                with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                    enabled=self.precision.bf16_autocast):
                    self.body(input_ids=input_ids, attention_mask=mask.long(), use_cache=False)
                if self.widths is None:
                    self.widths = [store[n].shape[1] for n in self.names]
                if out is None:
                    out = torch.empty((len(text_ids), sum(self.widths)), dtype=self.dtype, device=self.device)
                rows = torch.as_tensor(idx, device=self.device)
                lo = 0
                for n, d in zip(self.names, self.widths):  # module by module: no [b, units] copy
                    out[rows, lo : lo + d] = store[n].to(self.dtype)  # [b, d]
                    lo += d
                store.clear()
                current.clear()
        return out


def stream_expertise(model, tokenizer, sentences: pd.DataFrame, membership: pd.DataFrame, spec: CacheSpec,
                     out_path, meta: dict, grid, taus, *, batch_size: int = 16, max_length: int = 128,
                     device="cpu", bf16_autocast: bool | str = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                     scratch_dir=None, source: str = "membership") -> dict:
    """Expertise of every unit for every concept, written to `out_path` as the cached path writes it.

    sentences: text_id, text (the data set's sentence table); membership: concept, text_id, label.
    spec: the `el-units` cache spec (modules, hook, pooling max/mean, dtype: the block's dtype).
    batch_size, max_length, bf16_autocast: as `cache.cache_activations` (same forward, same numbers).
    Returns `expertise_store.write_expertise`'s summary plus "info" (what was run, for the metadata).
    """
    if spec.pooling not in ("max", "mean"):
        raise ValueError(f"streaming expertise needs a pooled cache spec (max or mean), got {spec.pooling!r}")
    text = sentences.drop_duplicates("text_id").set_index("text_id")["text"]
    concepts = _concepts(membership, text.index, source)
    precision = resolve_bf16_autocast(bf16_autocast, device)
    log.info("forward precision: %s", precision.reason)
    fwd = _Forward(model, tokenizer, spec, max_length, batch_size, device, precision)
    names = [c for c, _, _ in concepts]
    peak = 0
    with tempfile.TemporaryDirectory(dir=scratch_dir or Path(out_path).parent, prefix=".expertise-scratch-") as tmp:
        stats = None  # [4, concepts, units] float32 on disk
        for i, (concept, ids, positive) in enumerate(concepts):
            block = fwd.block(text.loc[ids].tolist(), ids)  # [n, units] on the device
            peak = max(peak, block.numel() * block.element_size())
            rows = expertise_stats(block, positive, chunk_bytes=chunk_bytes)  # [4, units]
            del block
            if stats is None:
                stats = np.lib.format.open_memmap(Path(tmp) / "stats.npy", mode="w+", dtype=np.float32,
                                                  shape=(4, len(concepts), rows.shape[1]))
            stats[:, i, :] = rows.float().cpu().numpy()
            if i % max(1, len(concepts) // 10) == 0 or i == len(concepts) - 1:
                log.info("concept %d/%d (%s): %d sentences x %d units", i + 1, len(concepts), concept, len(ids),
                         rows.shape[1])
        stats.flush()
        info = {"expertise_path": "streaming", "module_patterns": spec.modules,
                "hook": spec.hook, "pooling": spec.pooling, "dtype": spec.dtype, **precision.meta(),
                "batch_size": batch_size, "max_length": max_length, "device": str(device),
                "peak_block_bytes": peak}
        res = write_expertise(_module_tables(stats, names, fwd.names, fwd.widths), out_path,
                              {**meta, **info}, grid, taus)
        del stats
    res["info"] = info
    return res


def _module_tables(stats: np.ndarray, concepts: list[str], modules: list[str], widths: list[int]):
    """One DataFrame per module, the columns and order of `pipeline.iter_expertise`'s tables."""
    lo = 0
    for module, d in zip(modules, widths):
        df = pd.DataFrame({"concept": np.repeat(np.asarray(concepts, dtype=object), d), "module": module,
                           "layer": module_layer(module), "kind": module_kind(module),
                           "unit": np.tile(np.arange(d, dtype=np.int64), len(concepts))})
        for k, name in enumerate(STATS):
            df[name] = np.ascontiguousarray(stats[k, :, lo : lo + d]).reshape(-1)  # [concepts * d] float32
        lo += d
        yield df
