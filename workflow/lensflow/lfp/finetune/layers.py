"""Which module is "the MLP of block i" (LFP §3.2: the selected layers' MLP outputs).

Architectures name their blocks differently (`model.layers.3.mlp` in Llama/Gemma,
`gpt_neox.layers.3.mlp` in Pythia, `transformer.h.3.mlp` in GPT-2/GPT-Neo); the block index
is read with the same pattern as the layer divergence, so "layer 3" means one thing in both.
"""

from __future__ import annotations

import re

import torch

from lensflow.core.hooks import NoModuleMatched

from .divergence import DEFAULT_BLOCK_PATTERN


def mlp_modules(model: torch.nn.Module, layers: list[int]) -> list[str]:
    """Names of the MLP sub-module of each block in `layers`, in the order given."""
    # The block pattern followed directly by `mlp` at the end of the name: the block's own MLP,
    # never a sub-module of it (`...mlp.down_proj`) or an MLP nested deeper (MoE experts).
    regex = re.compile(DEFAULT_BLOCK_PATTERN.removesuffix(r"\.") + r"\.mlp$")
    found: dict[int, str] = {}
    for name, _ in model.named_modules():
        m = regex.search(name)
        if m:
            found.setdefault(int(m.group(1)), name)
    missing = [i for i in layers if i not in found]
    if missing:
        raise NoModuleMatched(
            f"no '<blocks>.<i>.mlp' module for layers {missing} in {type(model).__name__} "
            f"(found MLPs for layers {sorted(found)[:8]}...)"
        )
    return [found[i] for i in layers]
