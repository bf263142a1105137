# Helpers shared by every stage: config validation, registries, paths, resources.
import sys
from pathlib import Path

# Scripts import lensflow from workflow/ whether or not it is pip-installed; PYTHONPATH reaches
# local jobs and SLURM jobs alike (each SLURM job re-reads this Snakefile).
LIB = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, LIB)

from lensflow.config import ConfigError, expand_models, validate_config
from lensflow.runtime import export_pythonpath

export_pythonpath(LIB)

try:
    _validated = validate_config(
        config, source=", ".join(map(str, workflow.configfiles)) or "config"
    )
except ConfigError as e:
    # One clear message naming the key; nothing has been scheduled, so nothing is written.
    raise WorkflowError(str(e)) from None
config.clear()
config.update(_validated)

MODELS = expand_models(config["models"])
DATA = config["data"]
ACT = config["activations"]

# Later stages register their own model folders (tuned policies) and text tables (sentence
# banks) here, so the shared cache rule serves them without change.
MODEL_DIRS = {name: f"results/models/{name}" for name in MODELS}
CORPORA = {
    name: f"results/data/{name}.parquet"
    for name, spec in DATA.items()
    if spec["kind"] == "texts"
}


def model_dir(name):
    if name not in MODEL_DIRS:
        raise WorkflowError(
            f"unknown model '{name}' (known: {', '.join(sorted(MODEL_DIRS))})"
        )
    return MODEL_DIRS[name]


def corpus_path(name):
    if name not in CORPORA:
        raise WorkflowError(
            f"unknown corpus '{name}' (known: {', '.join(sorted(CORPORA))})"
        )
    return CORPORA[name]


def job_resources(kind):
    """mem_mb/runtime for a rule family from config `resources` (the SLURM profile may override)."""
    return config["resources"][kind]


def registry_choice(names):
    """A wildcard constraint that accepts exactly the given names."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def activation_targets():
    return [
        f"results/activations/{t['model']}/{t['corpus']}/{t['cache']}.parquet"
        for t in ACT["targets"]
    ]


def used_models():
    """Models some target needs; only these are materialised (paper.yaml lists ~30 checkpoints)."""
    return sorted({t["model"] for t in ACT["targets"]} | set(EXTRA_USED_MODELS))


# Stages append the registry models they use, so the inventory lists them.
EXTRA_USED_MODELS = []


def all_targets():
    return [
        *[f"results/data/{d}.parquet" for d in DATA],
        *activation_targets(),
        "results/tables/inventory.csv",
        "results/tables/inventory.md",
    ]
