"""What a job that loads a registry model needs in memory, known at planning time (no weight is read).

The workflow sizes `mem_mb` from these (workflow/rules/common.smk's model_mem_mb), per config
`resources.model_memory`: overhead_mb + copies x the weights' bytes in the registry dtype.
lensflow.core.model_sizes gives exact counts for the capacity plan; tests/core/test_capacity.py checks
HUB_PARAMS_B against them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .config import ConfigError

# Billions of parameters of hub models whose names round their size down (gemma-2b has 2.5B);
# other hub ids, GGUF files and registry names are read by name (`...-1.4b`, `...-135M...`).
HUB_PARAMS_B = {
    "eleutherai/pythia-70m": 0.0704,
    "eleutherai/pythia-160m": 0.162,
    "eleutherai/pythia-410m": 0.405,
    "eleutherai/pythia-1b": 1.012,
    "eleutherai/pythia-1.4b": 1.415,
    "eleutherai/pythia-2.8b": 2.775,
    "eleutherai/pythia-6.9b": 6.857,
    "eleutherai/pythia-12b": 11.846,
    "eleutherai/gpt-neo-125m": 0.125,
    "eleutherai/gpt-neo-1.3b": 1.316,
    "google/gemma-2b": 2.506,
    "google/gemma-2b-it": 2.506,
    "google/gemma-7b": 8.538,
    "google/gemma-7b-it": 8.538,
    "meta-llama/meta-llama-3-8b": 8.03,
    "meta-llama/meta-llama-3-8b-instruct": 8.03,
}
SIZE_IN_NAME = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)([mMbB])(?![A-Za-z])")
BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}


def check_params_b(memory: dict, registry: dict) -> None:
    """Every model named in resources.model_memory.params_b is in the registry (ConfigError if not)."""
    for name in memory["params_b"]:
        if name not in registry:
            raise ConfigError(
                f"key 'resources.model_memory.params_b.{name}': no model '{name}' in the registry "
                f"(known: {', '.join(sorted(registry))})")


def safetensors_params(folder) -> int:
    """Parameters in a local model folder, from its safetensors headers (no weight is read)."""
    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def model_params_b(name: str, models: dict, memory: dict) -> float:
    """Billions of parameters of registry model `name` (a checkpoint `<m>@<rev>` or a tuned policy
    `<m>+<task>` is its base model), as known at planning time: memory["params_b"] (config
    resources.model_memory), else a local folder's safetensors headers, else HUB_PARAMS_B, else the
    size in the hub id / GGUF file / registry name, else memory["default_params_b"].

    models: the expanded registry (name -> spec, checkpoints included)."""
    name = name.split("+")[0]
    base = name.split("@")[0]
    if base in memory["params_b"]:
        return memory["params_b"][base]
    spec = models.get(name, {})
    if spec.get("source") == "local":
        n = safetensors_params(spec["path"]) if Path(spec["path"]).is_dir() else 0
        if n:
            return n / 1e9
    if spec.get("id", "").lower() in HUB_PARAMS_B:
        return HUB_PARAMS_B[spec["id"].lower()]
    for text in (Path(spec.get("id", "")).name, spec.get("file", ""), base):
        sizes = [float(v) * (1e-3 if u in "mM" else 1) for v, u in SIZE_IN_NAME.findall(text)]
        if sizes:
            return max(sizes)
    return memory["default_params_b"]


def model_weights_mb(name: str, models: dict, memory: dict) -> float:
    """MB of `name`'s weights in its registry dtype."""
    dtype = models[name.split("+")[0]].get("dtype", "float32")
    return model_params_b(name, models, memory) * 1e3 * BYTES_PER_PARAM[dtype]


def job_mem_mb(name, floor: int, models: dict, memory: dict) -> int:
    """mem_mb of a job that loads `name` (None: no local model): max(floor, overhead_mb + copies x
    the weights)."""
    if not name:
        return floor
    need = memory["overhead_mb"] + memory["copies"] * model_weights_mb(name, models, memory)
    return max(floor, math.ceil(need))
