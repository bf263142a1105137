"""Per-block parameter divergence between a base and a fine-tuned model (LFP §3.2, App. C).

    divergence_i = sum over every parameter tensor p of block i of ||p_base - p_tuned||_F

All sub-modules of the block count (attention, MLP, norms). The difference is taken in
float32 or wider: the original code compared 8-bit weights, which rounds away the tiny
updates an lr-1e-6 RL run makes. We walk the tensors one at a time, so peak extra memory is
one tensor's float32 copy, never a whole difference model.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

import pandas as pd
import torch

# `<stack>.<i>.` where the stack is `layers` (Llama, Gemma, Mistral, Qwen, GPT-NeoX, OPT),
# `h` (GPT-2, GPT-Neo, GPT-J, Bloom) or `blocks` (TransformerLens). The leading `(^|\.)`
# stops e.g. `xlayers.0.` from matching. re.search takes the leftmost match, so nested
# indices (MoE `experts.3.`) never override the block index.
DEFAULT_BLOCK_PATTERN = r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\."


def _named_tensors(obj) -> Mapping[str, torch.Tensor]:
    """Parameters of a module, or a state-dict-like mapping as is (may be lazy)."""
    if isinstance(obj, torch.nn.Module):
        # Parameters only: buffers (rotary inv_freq, causal masks) are not learned.
        return dict(obj.named_parameters())
    if isinstance(obj, Mapping):
        return obj
    raise TypeError(f"expected an nn.Module or a state dict, got {type(obj).__name__}")


def block_index(name: str, pattern: str | re.Pattern = DEFAULT_BLOCK_PATTERN) -> int | None:
    """Transformer block index encoded in a parameter name, or None (embeddings, final norm)."""
    m = re.search(pattern, name)
    return int(m.group(1)) if m else None


def layer_divergence(
    base,
    tuned,
    pattern: str | re.Pattern = DEFAULT_BLOCK_PATTERN,
    dtype: torch.dtype = torch.float32,
) -> pd.DataFrame:
    """Sum of Frobenius norms of (base - tuned) over each block's tensors.

    `base`, `tuned`: nn.Modules of the same architecture, or state dicts with the same keys.
    `pattern`: regex whose group 1 is the block index in a parameter name.
    `dtype`: the precision of the difference (float32 per the paper; never below it).
    Returns columns layer, divergence, n_params (scalar count), n_tensors, sorted by layer.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"divergence must be computed in float32 or float64, not {dtype}")
    regex = re.compile(pattern)
    base_t, tuned_t = _named_tensors(base), _named_tensors(tuned)

    in_blocks = {n: block_index(n, regex) for n in base_t.keys()}
    in_blocks = {n: i for n, i in in_blocks.items() if i is not None}
    tuned_blocks = {n for n in tuned_t.keys() if block_index(n, regex) is not None}
    if set(in_blocks) != tuned_blocks:
        only_base = sorted(set(in_blocks) - tuned_blocks)[:5]
        only_tuned = sorted(tuned_blocks - set(in_blocks))[:5]
        raise KeyError(f"block parameters differ: only in base {only_base}, only in tuned {only_tuned}")
    if not in_blocks:
        raise ValueError(f"no parameter name matches the block pattern {regex.pattern!r}")

    rows: dict[int, dict] = {}
    for name, layer in in_blocks.items():
        p_base, p_tuned = base_t[name], tuned_t[name]
        if p_base.shape != p_tuned.shape:
            raise ValueError(f"{name}: shape {tuple(p_base.shape)} vs {tuple(p_tuned.shape)}")
        if not p_base.is_floating_point():  # integer buffers in a state dict carry no weights
            continue
        # Upcast each side before subtracting: a bf16 subtraction would round the update.
        diff = p_base.detach().to("cpu", dtype) - p_tuned.detach().to("cpu", dtype)
        row = rows.setdefault(layer, {"layer": layer, "divergence": 0.0, "n_params": 0, "n_tensors": 0})
        # Frobenius norm of any-rank tensor == 2-norm of its flattened entries.
        row["divergence"] += float(torch.linalg.vector_norm(diff))
        row["n_params"] += diff.numel()
        row["n_tensors"] += 1
    return pd.DataFrame(sorted(rows.values(), key=lambda r: r["layer"]))


def select_layers(df: pd.DataFrame, k: int = 5, which: str = "highest") -> list[int]:
    """The k layers to train SAEs on, sorted by index.

    which="highest": the k largest divergences (the paper's choice, §3.2).
    which="lowest":  the k smallest divergences.
    which="first":   the k lowest-index layers, i.e. App. F's "lowest / initial layers" ablation.
    Ties break towards the lower layer index. If the model has fewer than k blocks, all of
    them are returned with a warning.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > len(df):
        warnings.warn(f"asked for {k} layers but the model has {len(df)}; using all", stacklevel=2)
        k = len(df)
    if which == "highest":
        chosen = df.sort_values(["divergence", "layer"], ascending=[False, True]).head(k)
    elif which == "lowest":
        chosen = df.sort_values(["divergence", "layer"], ascending=[True, True]).head(k)
    elif which == "first":
        chosen = df.sort_values("layer").head(k)
    else:
        raise ValueError(f"which must be 'highest', 'lowest' or 'first', got {which!r}")
    return sorted(int(i) for i in chosen["layer"])
