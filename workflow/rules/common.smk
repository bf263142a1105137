# Helpers shared by every stage: config validation, registries, paths, resources.
import sys
from pathlib import Path

# Scripts import lensflow from workflow/ whether or not it is pip-installed; PYTHONPATH reaches
# local jobs and SLURM jobs alike (each SLURM job re-reads this Snakefile).
LIB = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, LIB)

from lensflow.core.config import ConfigError, expand_models, validate_config
from lensflow.core.runtime import export_pythonpath

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


# Named activation caches; stages add theirs (ExpertLens: "el-units").
CACHES = dict(ACT["caches"])


def cache_spec(name):
    if name not in CACHES:
        raise WorkflowError(
            f"unknown activation cache '{name}' (known: {', '.join(sorted(CACHES))})"
        )
    return CACHES[name]


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


# --- resources: GPU routing and the memory of jobs that load a model ----------------------
import json
import math
import os
import re


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
    follow the rules (tests/test_slurm.py checks every job of paper.yaml's dry-run)."""
    if callable(n):
        return {
            "gpu": n,
            "slurm_partition": lambda wildcards: slurm_partition(n(wildcards)),
        }
    return {"gpu": n, "slurm_partition": slurm_partition(n)}


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
MODEL_MEMORY = config["resources"]["model_memory"]

for _name in MODEL_MEMORY["params_b"]:
    if _name not in config["models"]:
        raise WorkflowError(
            f"key 'resources.model_memory.params_b.{_name}': no model '{_name}' in the registry "
            f"(known: {', '.join(sorted(config['models']))})"
        )


def _safetensors_params(folder):
    """Parameters in a local model folder, from its safetensors headers (no weight is read)."""
    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        total += sum(
            math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__"
        )
    return total


def model_params_b(name):
    """Billions of parameters of registry model `name` (a checkpoint `<m>@<rev>` or a tuned policy
    `<m>+<task>` is its base model), as known at planning time: resources.model_memory.params_b,
    else a local folder's safetensors headers, else HUB_PARAMS_B, else the size in the hub id /
    GGUF file / registry name, else resources.model_memory.default_params_b."""
    name = name.split("+")[0]
    base = name.split("@")[0]
    if base in MODEL_MEMORY["params_b"]:
        return MODEL_MEMORY["params_b"][base]
    spec = MODELS.get(name, {})
    if spec.get("source") == "local":
        n = _safetensors_params(spec["path"]) if Path(spec["path"]).is_dir() else 0
        if n:
            return n / 1e9
    if spec.get("id", "").lower() in HUB_PARAMS_B:
        return HUB_PARAMS_B[spec["id"].lower()]
    for text in (Path(spec.get("id", "")).name, spec.get("file", ""), base):
        sizes = [
            float(v) * (1e-3 if u in "mM" else 1) for v, u in SIZE_IN_NAME.findall(text)
        ]
        if sizes:
            return max(sizes)
    return MODEL_MEMORY["default_params_b"]


def model_weights_mb(name):
    """MB of `name`'s weights in its registry dtype."""
    dtype = MODELS[name.split("+")[0]].get("dtype", "float32")
    return model_params_b(name) * 1e3 * BYTES_PER_PARAM[dtype]


def model_mem_mb(family, model=lambda wc: wc.model):
    """mem_mb of a `family` (config `resources.<family>`) job that loads `model`:
    max(resources.<family>.mem_mb, overhead_mb + copies x the weights), per resources.model_memory.

    model: a registry name, or a function of the wildcards giving one or None (no local model,
    e.g. an HTTP endpoint); default the job's {model} wildcard."""
    floor = job_resources(family)["mem_mb"]

    def mem(name):
        if not name:
            return floor
        need = MODEL_MEMORY["overhead_mb"] + MODEL_MEMORY["copies"] * model_weights_mb(
            name
        )
        return max(floor, math.ceil(need))

    return (lambda wildcards: mem(model(wildcards))) if callable(model) else mem(model)


# The local model a job loads besides its {model}, for model_mem_mb (None: an HTTP endpoint).
def el_local_generator(wc):
    ds = el_dataset(wc.dataset)
    return ds["generator"] if ds["backend"] == "local" else None


def lfp_local_rewriter(wc):
    rw = lfp_rewriter(wc.task)
    return rw["model"] if rw["backend"] == "local" else None


def lfp_local_explainer(wc):
    ex = LFP["explainer"]
    return ex["model"] if ex["backend"] == "local" else None


def fig_dpi(name):
    """PNG resolution of the figure made by fig_<name> (`figures.<name>.dpi`, else `figures.dpi`)."""
    return config["figures"].get(name, {}).get("dpi", config["figures"]["dpi"])


def check_figure_options(rule_names):
    """Every `figures.<name>` entry must name a figure (a fig_<name> rule); a typo would change nothing."""
    known = sorted(r[len("fig_") :] for r in rule_names if r.startswith("fig_"))
    for name in config["figures"]:
        if name != "dpi" and name not in known:
            raise WorkflowError(
                f"key 'figures.{name}': there is no fig_{name} rule; known figures are "
                + ", ".join(known)
            )


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


# --- ExpertLens -------------------------------------------------------------------------
EL = config.get("expertlens")
if EL:
    CACHES["el-units"] = EL["cache"]
    for _ds in EL["datasets"]:
        CORPORA[f"el-{_ds}"] = f"results/expertlens/datasets/{_ds}/sentences.parquet"
    # Training dynamics: every checkpoint of the listed models, on the first data set.
    EL_CHECKPOINTS = [
        f"{m}@{rev}"
        for m in EL["dynamics"]
        for rev in config["models"][m]["checkpoints"]
    ]
    EL_DYNAMICS_DATASET = next(iter(EL["datasets"]))
    # `auto` is resolved here, at DAG time, because the two paths' rules take different inputs (the
    # el-units cache vs the model and the sentences); a job's device is known only when it runs.
    # auto -> cached: one forward per sentence and the numba kernel, the faster path on CPU; configs
    # that run on GPUs at scale (config/paper.yaml) say `streaming` (config/README.md).
    EL_EXPERTISE_PATH = {"auto": "cached"}.get(
        EL["expertise"]["path"], EL["expertise"]["path"]
    )
    EXTRA_USED_MODELS += EL["models"] + EL_CHECKPOINTS
    EXTRA_USED_MODELS += [
        d["generator"]
        for d in EL["datasets"].values()
        if d["source"] == "generated" and d["backend"] == "local"
    ]


def el_datasets(source):
    return [n for n, d in EL["datasets"].items() if d["source"] == source]


def el_dataset(name):
    return EL["datasets"][name]


def el_generator_input(wc):
    """The local generator's model folder (input.model, a path); nothing for an endpoint."""
    ds = el_dataset(wc.dataset)
    return model_dir(ds["generator"]) if ds["backend"] == "local" else []


def el_generator_name(wc):
    ds = el_dataset(wc.dataset)
    if ds["backend"] == "local":
        return ds["generator"]
    return f"{ds['model']} at {ds['base_url']}"


def el_endpoint(wc):
    """Backend openai: what the script needs to reach the endpoint (no key: only its variable)."""
    ds = el_dataset(wc.dataset)
    keys = ["base_url", "model", "api_key_env", "timeout", "max_retries"]
    return {k: ds[k] for k in keys} if ds["backend"] == "openai" else {}


def el_runs():
    """(model, dataset) pairs analysed: every model on every data set, plus checkpoints."""
    runs = [(m, d) for m in EL["models"] for d in EL["datasets"]]
    return runs + [(m, EL_DYNAMICS_DATASET) for m in EL_CHECKPOINTS]


def el_similarity_sources():
    """label -> similarity table, for neurons of each run and for each baseline."""
    src = {
        f"neurons|{m}|{d}": f"results/expertlens/{m}/{d}/similarity.parquet"
        for m, d in el_runs()
    }
    if "glove" in EL["baselines"]:
        src["baseline||"] = "results/expertlens/baselines/glove.parquet"
    if "minilm" in EL["baselines"]:
        for d in EL["datasets"]:
            src[f"baseline||{d}"] = f"results/expertlens/baselines/minilm/{d}.parquet"
    if "input_embedding" in EL["baselines"]:
        for m in EL["models"]:
            src[f"baseline|{m}|"] = (
                f"results/expertlens/baselines/input_embedding/{m}.parquet"
            )
    return src


def el_figures():
    names = ["alignment", "expert_counts", "expert_layers", "stability", "scaling"]
    names += ["causal"] + (["dynamics"] if EL_CHECKPOINTS else [])
    figs = [f"results/figures/expertlens/{n}.png" for n in names]
    figs += [
        f"results/figures/expertlens/domains_{m}_{d}.png"
        for m in EL["models"]
        for d in EL["datasets"]
    ]
    return figs


# --- Learned Feedback Patterns: fine-tuning ------------------------------------------------
FT = config.get("finetune")
FT_RUNS = []
if FT:
    FT_RUNS = [
        (m, t)
        for t, spec in FT["tasks"].items()
        for m in spec.get("models", FT["models"])
    ]
    # Tuned policies are models too: '<base>+<task>' for the shared activation cache.
    for _m, _t in FT_RUNS:
        MODEL_DIRS[f"{_m}+{_t}"] = f"results/finetune/{_m}/{_t}/model"
    EXTRA_USED_MODELS += sorted({m for m, _ in FT_RUNS})
    EXTRA_USED_MODELS += [
        sp["generator"] for sp in FT["synthetic_preferences"].values()
    ]


def ft_task(task):
    return FT["tasks"][task]


def ft_tasks(methods):
    return [t for t, spec in FT["tasks"].items() if spec["method"] in methods]


def ft_preferences(task):
    """The preference table of a DPO task (a prepared data set or a synthetic one)."""
    return f"results/data/{ft_task(task)['preferences']}.parquet"


def ft_targets():
    if not FT:
        return []
    out = []
    for m, t in FT_RUNS:
        out += [
            f"results/figures/lfp/training_{m}_{t}.png",
            f"results/figures/lfp/divergence_{m}_{t}.png",
        ]
    return out + ["results/tables/lfp_finetune.md"]


# --- Learned Feedback Patterns: SAEs, probes, explanations, validation --------------------
LFP = config.get("lfp") if FT else None
LFP_RUNS = FT_RUNS if LFP else []
if LFP and LFP["explainer"]["backend"] == "local":
    EXTRA_USED_MODELS += [LFP["explainer"]["model"]]
if LFP and LFP["triples"]["rewriter"]["backend"] == "local":
    EXTRA_USED_MODELS += [LFP["triples"]["rewriter"]["model"]]


def lfp_alpha(model):
    return LFP["sae"]["alpha_by_model"].get(model, LFP["sae"]["alpha"])


def lfp_variants(model, task):
    """SAE variant name -> settings (lensflow.lfp.sae.train.Variant) for one tuned model."""
    sae, abl = LFP["sae"], LFP["ablations"]
    small, big = sae["widths"]
    base = dict(tied=sae["tied"], alpha=lfp_alpha(model), layers="highest")
    out = {"n": dict(base, width=small), "2n": dict(base, width=big)}
    if task not in abl.get("tasks", list(FT["tasks"])):
        return out
    for a in abl["l1_sweep"]:
        if a != base["alpha"]:
            out[f"l1-{a:g}"] = dict(base, width=small, alpha=a)
    if abl["untied"]:
        out["untied" if sae["tied"] else "tied"] = dict(
            base, width=small, tied=not sae["tied"]
        )
    if abl["lowest_layers"]:
        out["lowest"] = dict(base, width=small, layers="lowest")
    return out


def lfp_selections(model, task):
    """Layer selections (layers.json keys) whose activations the variants need."""
    return sorted({v["layers"] for v in lfp_variants(model, task).values()})


def lfp_kind(task):
    """What a task's feedback is: the VADER reward (RL tasks) or an hh / toxic preference judge."""
    spec = ft_task(task)
    if "feedback" in spec:
        return spec["feedback"]
    if spec["method"] != "dpo":
        return "vader"
    return FT["synthetic_preferences"][spec["preferences"]]["judge"]


def lfp_task_table(task):
    """The table a task's texts come from: the reviews corpus (RL) or the preference pairs (DPO)."""
    if ft_task(task)["method"] == "dpo":
        return ft_preferences(task)
    return f"results/data/{FT['reviews']}.parquet"


def lfp_triples_table(task):
    """The table a task's triples are drawn from: lfp.triples.data[task] (the paper: a test split
    the policy was not trained on), else the task's own training table."""
    name = LFP["triples"]["data"].get(task)
    return f"results/data/{name}.parquet" if name else lfp_task_table(task)


def lfp_explainer_input(wc):
    """The local explainer's model folder; nothing for an HTTP endpoint."""
    ex = LFP["explainer"]
    return [model_dir(ex["model"])] if ex["backend"] == "local" else []


def lfp_rewriter(task):
    """How a task's triples are written: VADER substitution needs no LLM; hh / toxic rewrites use
    lfp.triples.rewriter (template, local or openai)."""
    if lfp_kind(task) == "vader":
        return {"backend": "template"}
    return LFP["triples"]["rewriter"]


def lfp_rewriter_input(wc):
    """The local rewriter's model folder; nothing for templates or an HTTP endpoint."""
    rw = lfp_rewriter(wc.task)
    return [model_dir(rw["model"])] if rw["backend"] == "local" else []


def lfp_explainer_gpu():
    return 1 if LFP["explainer"]["backend"] == "local" else 0


def lfp_sae_files(model, task):
    return [
        f"results/lfp/{model}/{task}/sae/{v}_metrics.parquet"
        for v in lfp_variants(model, task)
    ]


def lfp_control_runs():
    """(model, task) runs whose probe is repeated on the base model (lfp.base_control)."""
    tasks = LFP["base_control"].get("tasks", list(FT["tasks"]))
    return [(m, t) for m, t in LFP_RUNS if t in tasks]


LFP_CONTROL_RUNS = lfp_control_runs() if LFP else []


LFP_TABLES = ["probes", "words", "explanations", "activity", "ablation", "claims"]


def lfp_targets():
    if not LFP:
        return []
    tables = ["sae", "overlap"] + LFP_TABLES
    figures = [
        f"results/figures/lfp/{name}_{m}_{t}.png"
        for m, t in LFP_RUNS
        for name in ["probe_pca"] + (["probe_error"] if lfp_kind(t) == "vader" else [])
    ]
    return (
        [f"results/tables/lfp_{n}.md" for n in tables]
        + figures
        + [
            f"results/figures/lfp/{name}_{m}_{t}.png"
            for m, t in LFP_RUNS
            for name in ["sae_training", "l1_sweep", "overlap"]
        ]
    )


EL_TABLES = ["alignment", "stability", "domains", "causal", "claims", "concepts"]


def el_targets():
    if not EL:
        return []
    return el_figures() + [f"results/tables/expertlens_{t}.md" for t in EL_TABLES]


def all_targets():
    return [
        *el_targets(),
        *ft_targets(),
        *lfp_targets(),
        *[f"results/data/{d}.parquet" for d in DATA],
        *activation_targets(),
        "results/tables/inventory.csv",
        "results/tables/inventory.md",
    ]
