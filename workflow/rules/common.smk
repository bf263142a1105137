# What every stage uses: config validation, the registries (models, data, text tables, activation
# caches), job resources and figure options. Each stage's own helpers open its rule file
# (expertlens.smk, finetune.smk, lfp_common.smk and the LFP rule files).
import os
import re
import sys
from pathlib import Path

# Scripts import lensflow from workflow/ whether or not it is pip-installed; PYTHONPATH reaches
# local jobs and SLURM jobs alike (each SLURM job re-reads this Snakefile).
LIB = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, LIB)

from lensflow.core.config import (
    ConfigError,
    expand_models,
    unknown_figure_options,
    validate_config,
)
from lensflow.core.model_memory import check_params_b, job_mem_mb
from lensflow.core.runtime import export_pythonpath

export_pythonpath(LIB)

try:
    _validated = validate_config(
        config, source=", ".join(map(str, workflow.configfiles)) or "config"
    )
    check_params_b(_validated["resources"]["model_memory"], _validated["models"])
except ConfigError as e:
    # One clear message naming the key; nothing has been scheduled, so nothing is written.
    raise WorkflowError(str(e)) from None
config.clear()
config.update(_validated)

MODELS = expand_models(config["models"])
DATA = config["data"]
ACT = config["activations"]
# Each stage's sub-config, None when it is off (the Snakefile then skips its rule files).
EL = config.get("expertlens")
FT = config.get("finetune")
LFP = config.get("lfp") if FT else None

# Stages register their model folders, text tables and caches here (the shared rules serve them
# unchanged), the registry models they use (the inventory) and their final targets (functions).
MODEL_DIRS = {name: f"results/models/{name}" for name in MODELS}
CORPORA = {
    name: f"results/data/{name}.parquet"
    for name, spec in DATA.items()
    if spec["kind"] == "texts"
}
CACHES = dict(ACT["caches"])
EXTRA_USED_MODELS = []
STAGE_TARGETS = []


def _registered(kind, registry, name):
    if name not in registry:
        raise WorkflowError(
            f"unknown {kind} '{name}' (known: {', '.join(sorted(registry))})"
        )
    return registry[name]


def cache_spec(name):
    return _registered("activation cache", CACHES, name)


def model_dir(name):
    return _registered("model", MODEL_DIRS, name)


def corpus_path(name):
    return _registered("corpus", CORPORA, name)


def registry_choice(names):
    """A wildcard constraint that accepts exactly the given names."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


# --- resources: the rule families, GPU routing and the memory of jobs that load a model ---
def job_resources(kind):
    """mem_mb/runtime for a rule family from config `resources` (the SLURM profile may override)."""
    return config["resources"][kind]


def slurm_partition(n_gpus):
    """The SLURM partition of a job asking for `n_gpus`: $LENSFLOW_SLURM_GPU_PARTITION when > 0,
    else $LENSFLOW_SLURM_PARTITION. Unset, the variable's name reaches sbatch, which rejects it by
    name (as the profile's default does); other executors ignore the resource."""
    var = "LENSFLOW_SLURM_GPU_PARTITION" if n_gpus > 0 else "LENSFLOW_SLURM_PARTITION"
    return os.environ.get(var) or f"${var}"


def gpu_resources(n=1):
    """`gpu` and the SLURM partition that follows from it, for a rule's `resources: **gpu_resources(n)`.

    n: GPUs, an int or a function of the wildcards (0 where the job needs none, e.g. a remote
    endpoint). Every rule that asks for a GPU declares it this way, so no list of rule names has to
    follow the rules (tests/core/test_slurm.py checks paper.yaml's jobs)."""
    if callable(n):
        return {
            "gpu": n,
            "slurm_partition": lambda wildcards: slurm_partition(n(wildcards)),
        }
    return {"gpu": n, "slurm_partition": slurm_partition(n)}


def model_mem_mb(family, model=lambda wc: wc.model):
    """mem_mb of a `family` (config `resources.<family>`) job that loads `model`: max(its mem_mb,
    overhead_mb + copies x the weights), per resources.model_memory (lensflow.core.model_memory).

    model: a registry name, or a function of the wildcards giving one or None (no local model,
    e.g. an HTTP endpoint); default the job's {model} wildcard."""
    floor = job_resources(family)["mem_mb"]
    mem = lambda name: job_mem_mb(
        name, floor, MODELS, config["resources"]["model_memory"]
    )
    return (lambda wildcards: mem(model(wildcards))) if callable(model) else mem(model)


def fig_dpi(name):
    """PNG resolution of the figure made by fig_<name> (`figures.<name>.dpi`, else `figures.dpi`)."""
    return config["figures"].get(name, {}).get("dpi", config["figures"]["dpi"])


def check_figure_options(rule_names):
    """Every `figures.<name>` entry must name a figure (lensflow.core.config.unknown_figure_options)."""
    error = unknown_figure_options(config["figures"], rule_names)
    if error:
        raise WorkflowError(error)


def used_models():
    """Models some target needs; only these are materialised (paper.yaml lists ~30 checkpoints)."""
    return sorted({t["model"] for t in ACT["targets"]} | set(EXTRA_USED_MODELS))


def all_targets():
    return [
        *[path for stage_targets in STAGE_TARGETS for path in stage_targets()],
        *[f"results/data/{d}.parquet" for d in DATA],
        *[
            f"results/activations/{t['model']}/{t['corpus']}/{t['cache']}.parquet"
            for t in ACT["targets"]
        ],
        "results/tables/inventory.csv",
        "results/tables/inventory.md",
    ]
