"""Probe inputs and labels from contrastive triples (paper §3.3, Fig. 2; spec item 7).

The probe sees A_concat(x): the AE_n codes of the selected layers' MLP outputs, concatenated over
layers, for the token(s) that carry the feedback: the substituted word (mean over its sub-tokens
when the tokenizer splits it, as the paper averages) for VADER triples, or every non-padding token
for the hh / toxic rewrites. Its label is how far that element moves A_concat away from the
neutral element of its triple: +||A(x+) - A(x0)||_2 for positives, -||A(x-) - A(x0)||_2 for
negatives, rescaled to the reward's range so predictions compare with lexicon values.

The codes come from the model the SAEs were trained on (the tuned model); the original code ran
the *base* model through SAEs of the tuned model (spec, known defects), which this module cannot
catch: pass the tuned model.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from lensflow.core.hooks import capture
from lensflow.core.runtime import resolve_bf16_autocast

from ..finetune.layers import mlp_modules
from ..sae.model import SparseAutoencoder

log = logging.getLogger("lensflow")


def _token_mask(offsets: torch.Tensor, attention: torch.Tensor, starts, ends) -> torch.Tensor:
    """Which tokens each row averages over: [batch, pos] bool.

    offsets [batch, pos, 2] char spans of tokens; attention [batch, pos]. A row with start >= 0
    keeps the tokens whose non-empty span overlaps [start, end); otherwise every non-padding token.
    """
    s = torch.tensor(np.asarray(starts, dtype=np.int64))[:, None]  # [batch, 1]
    e = torch.tensor(np.asarray(ends, dtype=np.int64))[:, None]  # [batch, 1]
    t0, t1 = offsets[..., 0], offsets[..., 1]  # [batch, pos]
    in_span = (t1 > t0) & (t0 < e) & (t1 > s) & attention.bool()
    return torch.where(s >= 0, in_span, attention.bool())


def _layer_codes(acts: torch.Tensor, mask: torch.Tensor, sae: SparseAutoencoder) -> torch.Tensor:
    """Mean SAE code over the masked tokens of each row: acts [batch, pos, d] -> [batch, d_hidden]."""
    param = next(sae.parameters())
    rows = mask.nonzero()[:, 0].to(param.device)  # [n_sel] row of each selected token
    codes = sae.encode(acts[mask].to(param.device, torch.float32))  # [n_sel, d_hidden]
    total = torch.zeros(mask.shape[0], sae.d_hidden, device=param.device).index_add_(0, rows, codes)
    return total / mask.sum(1, keepdim=True).to(param.device)  # [batch, d_hidden]


def _check_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("probe_codes needs a fast tokenizer (offset mappings locate the substituted word)")


@torch.inference_mode()
def probe_codes(
    model,
    tokenizer,
    triples: pd.DataFrame,
    layers: list[int],
    saes: dict[int, SparseAutoencoder],
    device="cpu",
    batch_size: int = 16,
    max_length: int = 128,
    bf16_autocast: bool | str = False,
) -> np.ndarray:
    """A_concat for every row of `triples`: float32 [n_rows, sum of saes[l].d_hidden over layers].

    Texts are tokenized with right padding and truncated to `max_length`; the MLP output of each
    layer in `layers` (hook on `mlp_modules(model, layers)`) is encoded token by token with
    saes[layer], and the codes are averaged over the row's selected tokens (see `_token_mask`),
    then concatenated in the order of `layers`. Raises ValueError naming the triple if its word
    span covers no token (e.g. truncated away). `model` must already be on `device` and in eval
    mode (this function changes neither); the tokenizer's padding side and pad token are restored.
    bf16_autocast (true / false / "auto": bf16 only where native on `device`, the activation cache's
    rule, runtime.resolve_bf16_autocast) runs the model's matmuls in bfloat16; the SAEs always
    encode in float32.
    """
    _check_fast(tokenizer)
    missing = [l for l in layers if l not in saes]
    if missing:
        raise ValueError(f"no SAE for layers {missing} (have {sorted(saes)})")
    names = mlp_modules(model, layers)
    precision = resolve_bf16_autocast(bf16_autocast, device)
    log.info("forward precision: %s", precision.reason)
    body = getattr(model, "base_model", model)  # hooks fire without computing the LM head's logits
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = []
    try:
        with capture(model, names, hook="output") as store:
            for lo in range(0, len(triples), batch_size):
                batch = triples.iloc[lo : lo + batch_size]
                enc = tokenizer(list(batch["text"]), return_tensors="pt", padding=True, truncation=True,
                                max_length=max_length, return_offsets_mapping=True)
                offsets = enc.pop("offset_mapping")  # [batch, pos, 2]
                mask = _token_mask(offsets, enc["attention_mask"], batch["span_start"].to_numpy(),
                                   batch["span_end"].to_numpy())  # [batch, pos]
                _check_spans(mask, batch)
                with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                                    enabled=precision.bf16_autocast):
                    body(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                         use_cache=False)  # no KV cache: one forward never reads it
                out.append(torch.cat([_layer_codes(store[n], mask.to(store[n].device), saes[l])
                                      for n, l in zip(names, layers)], dim=1).cpu())
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    return torch.cat(out).numpy().astype(np.float32)  # [n_rows, sum d_hidden]


def _check_spans(mask: torch.Tensor, batch: pd.DataFrame) -> None:
    empty = (~mask.any(1)).nonzero()[:, 0].tolist()
    if empty:
        row = batch.iloc[empty[0]]
        raise ValueError(
            f"triple {row['triple_id']} ({row['polarity']}): span [{row['span_start']}, {row['span_end']}) "
            f"covers no token (truncated by max_length, or an empty text?) in {row['text'][:80]!r}"
        )


def _triple_index(triples: pd.DataFrame) -> pd.DataFrame:
    """Row positions of each triple's elements: DataFrame(index=triple_id, positive, neutral, negative)."""
    pos = triples.assign(row=np.arange(len(triples)))
    counts = pos.groupby(["triple_id", "polarity"]).size()
    if (counts != 1).any() or len(counts) != 3 * pos["triple_id"].nunique():
        bad = counts[counts != 1].index.tolist()[:5]
        raise ValueError(f"every triple needs exactly one positive, neutral and negative row (bad: {bad})")
    return pos.pivot(index="triple_id", columns="polarity", values="row")[["positive", "neutral", "negative"]]


def probe_dataset(triples: pd.DataFrame, codes: np.ndarray, target_max: float) -> tuple[np.ndarray, pd.DataFrame]:
    """The paper's probe dataset D = (x_i, y_i) (§3.3).

    codes: [n_rows, d], row-aligned with `triples`. Per triple, delta+ = ||A(x+) - A(x0)||_2 and
    delta- = -||A(x-) - A(x0)||_2. Output rows: x+ (features A(x+), label_raw delta+) and x-
    (features A(x-), label_raw delta-), triple by triple. label = label_raw * target_max /
    max|label_raw| over the whole dataset, so labels span the reward's range [-target_max,
    target_max] (VADER: the caller passes the largest |lexicon value| among the words used).
    Returns (X float32 [2 * n_triples, d], table DataFrame(triple_id, polarity, word, word_value,
    label, label_raw)).
    """
    codes = np.asarray(codes, dtype=np.float64)  # [n_rows, d]
    if codes.shape[0] != len(triples):
        raise ValueError(f"{codes.shape[0]} code rows for {len(triples)} triple rows")
    if not target_max > 0:
        raise ValueError(f"target_max must be > 0, got {target_max}")
    idx = _triple_index(triples)  # [n_triples, 3]
    p, z, n = (idx[c].to_numpy() for c in ("positive", "neutral", "negative"))
    delta_plus = np.linalg.norm(codes[p] - codes[z], axis=1)  # [n_triples]
    delta_minus = -np.linalg.norm(codes[n] - codes[z], axis=1)  # [n_triples]
    rows = np.stack([p, n], axis=1).ravel()  # x+, x- of triple 0, then of triple 1, ...
    raw = np.stack([delta_plus, delta_minus], axis=1).ravel()  # [2 * n_triples]
    peak = np.abs(raw).max()
    if peak == 0:
        raise ValueError("all activation deltas are 0: the SAE codes do not distinguish any triple's elements")
    table = triples.iloc[rows][["triple_id", "polarity", "word", "word_value"]].reset_index(drop=True)
    table["label"] = raw * target_max / peak
    table["label_raw"] = raw
    return codes[rows].astype(np.float32), table
