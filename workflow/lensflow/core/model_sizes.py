"""Sizes of registry models without their weights: parameters, layers, widths, module units.

Hub models (and the default's GGUF files): KNOWN_MODELS holds the config.json entries that set their
sizes (so no download is needed to plan); local models: their config.json (a materialised folder results/models/<name> works
for any source). The model is built on torch's meta device (no memory, a second or two even for
12B), which gives the exact parameter count and the widths of the modules a cache's patterns match.
Used by the capacity plan (lensflow.core.capacity); tests/core/test_capacity.py checks the counts against the
ones the workflow's memory sizing uses (lensflow.core.model_memory.HUB_PARAMS_B) and the issue's unit counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DTYPE_B = {"float32": 4, "bfloat16": 2, "float16": 2}
_NEOX = dict(model_type="gpt_neox", rotary_pct=0.25, tie_word_embeddings=False)
KNOWN_MODELS = {  # hub id -> config.json entries that set the sizes; hub_bytes: bytes per weight of the hub files
    "eleutherai/pythia-70m": dict(_NEOX, hidden_size=512, num_hidden_layers=6, intermediate_size=2048,
                                  num_attention_heads=8, vocab_size=50304, hub_bytes=2),
    "eleutherai/pythia-160m": dict(_NEOX, hidden_size=768, num_hidden_layers=12, intermediate_size=3072,
                                   num_attention_heads=12, vocab_size=50304, hub_bytes=2),
    "eleutherai/pythia-1b": dict(_NEOX, hidden_size=2048, num_hidden_layers=16, intermediate_size=8192,
                                 num_attention_heads=8, vocab_size=50304, hub_bytes=2),
    "eleutherai/pythia-12b": dict(_NEOX, hidden_size=5120, num_hidden_layers=36, intermediate_size=20480,
                                  num_attention_heads=40, vocab_size=50688, hub_bytes=2),
    "eleutherai/gpt-neo-125m": dict(model_type="gpt_neo", hidden_size=768, num_layers=12, num_heads=12,
                                    vocab_size=50257, attention_types=[[["global", "local"], 6]], hub_bytes=4),
    "google/gemma-2b-it": dict(model_type="gemma", hidden_size=2048, num_hidden_layers=18, intermediate_size=16384,
                               num_attention_heads=8, num_key_value_heads=1, head_dim=256, vocab_size=256000,
                               hub_bytes=2),
    # the embedded default's GGUF models (by file name; dequantised to the registry dtype)
    "smollm2-135m-instruct.q4_1.gguf": dict(model_type="llama", hidden_size=576, num_hidden_layers=30,
                                            intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
                                            vocab_size=49152, tie_word_embeddings=True),
    "gemma-3-270m-q4_k_m.gguf": dict(model_type="gemma3_text", hidden_size=640, num_hidden_layers=18,
                                     intermediate_size=2048, num_attention_heads=4, num_key_value_heads=1,
                                     head_dim=256, vocab_size=262144),
}


class CapacityError(ValueError):
    """A model whose sizes cannot be told (the message says how to give them)."""


@dataclass
class Dims:
    params: int
    h: int  # hidden size (d_model)
    layers: int
    inter: int  # MLP width
    kv: int  # key/value width per token and layer (KV cache)
    vocab: int
    gated: bool  # gated MLP (gate_proj): 3 weight matrices, more activations
    hub_bytes: int  # bytes per weight in the hub's files (0: not a known hub model)
    model: object = field(repr=False)  # the model on the meta device

    def units(self, patterns, hook="output") -> tuple[int, int]:
        """(all units, the widest module's) of the modules the fnmatch patterns match (lensflow.core.hooks):
        a Linear's out_features (hook output) or in_features (input); any other module (a block's MLP,
        whose output is added to the residual stream) is d_model wide."""
        from torch import nn

        from .hooks import match_modules

        mods = dict(self.model.named_modules())
        w = [(m.in_features if hook == "input" else m.out_features) if isinstance(m, nn.Linear) else self.h
             for m in map(mods.get, match_modules(self.model, patterns))]
        return sum(w), max(w)


@lru_cache(maxsize=None)
def _dims(key: str, folder: str | None) -> Dims:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    known = dict(KNOWN_MODELS.get(key, {}))
    hub_bytes = known.pop("hub_bytes", 0)
    cfg = AutoConfig.for_model(**known) if known else AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    t = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    h, heads = t.hidden_size, getattr(t, "num_attention_heads", None) or t.num_heads
    kv = (getattr(t, "num_key_value_heads", None) or heads) * (getattr(t, "head_dim", None) or h // heads)
    layers = getattr(t, "num_hidden_layers", None) or t.num_layers
    gated = any(n.endswith("gate_proj") for n, _ in model.named_modules())
    params = sum(p.numel() for p in model.parameters())  # tied embeddings once
    return Dims(params, h, layers, getattr(t, "intermediate_size", None) or 4 * h, kv, t.vocab_size, gated,
                hub_bytes, model)


def model_dims(name: str, spec: dict, root=".") -> Dims:
    """Sizes of registry model `name` (spec as lensflow.core.config.expand_models gives it)."""
    key = (spec.get("id") or spec.get("file") or "").lower()
    if key in KNOWN_MODELS:
        return _dims(key, None)
    for folder in (spec.get("path"), Path(root) / "results" / "models" / name):
        if folder and (Path(folder) / "config.json").is_file():
            return _dims("", str(folder))
    raise CapacityError(f"model {name!r}: its sizes are unknown (not in lensflow.core.model_sizes.KNOWN_MODELS, no "
                        f"config.json in its folder); materialise it first (snakemake results/models/{name}) or "
                        "add its hub id to KNOWN_MODELS")


def jobs_of_dry_run(text: str) -> list[dict]:
    """[{"rule", "wildcards", "resources"}] of every job a `snakemake -n` printout lists."""
    jobs, job = [], None
    for line in text.splitlines():
        m = re.match(r"(?:local)?rule (\w+):$", line)
        if m:
            job = {"rule": m.group(1), "wildcards": {}, "resources": {}}
            jobs.append(job)
        elif job and line.startswith(("    wildcards: ", "    resources: ")):
            key = "wildcards" if line.startswith("    wildcards: ") else "resources"
            job[key] = dict(kv.split("=", 1) for kv in line.split(": ", 1)[1].split(", "))
    return jobs
