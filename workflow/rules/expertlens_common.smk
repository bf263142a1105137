# ExpertLens: the stage's registrations and helpers (its rules: expertlens.smk; figures.smk).
from lensflow.expertlens.naming import COSINE, headline_measure, source_label

CACHES["el-units"] = EL["cache"]
for _ds in EL["datasets"]:
    CORPORA[f"el-{_ds}"] = f"results/expertlens/datasets/{_ds}/sentences.parquet"
# The first data set: training dynamics (every checkpoint of the listed models) and the causal check.
EL_FIRST_DATASET = next(iter(EL["datasets"]))
EL_CHECKPOINTS = [
    f"{m}@{rev}" for m in EL["dynamics"] for rev in config["models"][m]["checkpoints"]
]
# (model, data set) runs: every model on every data set; analysed: plus the checkpoints.
EL_GRID = [(m, d) for m in EL["models"] for d in EL["datasets"]]
EL_RUNS = EL_GRID + [(m, EL_FIRST_DATASET) for m in EL_CHECKPOINTS]
EL_CAUSAL_RUNS = [(m, EL_FIRST_DATASET) for m in EL["models"]]
# The headline: Jaccard similarity at the lowest tau.
EL_TAU = min(EL["taus"])
EL_MEASURE = headline_measure(EL["taus"])
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


def el_files(name, runs=EL_GRID):
    """results/expertlens/<model>/<dataset>/<name> of each run, in order."""
    return [f"results/expertlens/{m}/{d}/{name}" for m, d in runs]


def el_datasets(source):
    return [n for n, d in EL["datasets"].items() if d["source"] == source]


def el_dataset(name):
    return EL["datasets"][name]


def el_generator_input(wc):
    """The local generator's model folder (input.model, a path); nothing for an endpoint."""
    ds = el_dataset(wc.dataset)
    return model_dir(ds["generator"]) if ds["backend"] == "local" else []


def el_local_generator(wc):
    """The generator a job loads, for model_mem_mb (None: an HTTP endpoint)."""
    ds = el_dataset(wc.dataset)
    return ds["generator"] if ds["backend"] == "local" else None


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


def el_categories_files():
    """Domain labels for el_domains: a prepared data set of kind categories, a CSV or Parquet
    path (concept,category), or nothing (expertlens.categories unset: untestable)."""
    name = EL["categories"]
    if not name:
        return []
    return [f"results/data/{name}.parquet" if name in DATA else name]


def el_similarity_sources():
    """label -> similarity table, for neurons of each run and for each baseline."""
    src = {
        source_label("neurons", m, d): f
        for (m, d), f in zip(EL_RUNS, el_files("similarity.parquet", EL_RUNS))
    }
    if "glove" in EL["baselines"]:
        src[source_label("baseline")] = "results/expertlens/baselines/glove.parquet"
    if "minilm" in EL["baselines"]:
        for d in EL["datasets"]:
            src[source_label("baseline", dataset=d)] = (
                f"results/expertlens/baselines/minilm/{d}.parquet"
            )
    if "input_embedding" in EL["baselines"]:
        for m in EL["models"]:
            src[source_label("baseline", m)] = (
                f"results/expertlens/baselines/input_embedding/{m}.parquet"
            )
    return src


def el_figures():
    names = ["alignment", "expert_counts", "expert_layers", "stability", "scaling"]
    names += ["causal"] + (["dynamics"] if EL_CHECKPOINTS else [])
    figs = [f"results/figures/expertlens/{n}.png" for n in names]
    return figs + [
        f"results/figures/expertlens/domains_{m}_{d}.png" for m, d in EL_GRID
    ]


EL_TABLES = ["alignment", "stability", "domains", "causal", "claims", "concepts"]
STAGE_TARGETS.append(
    lambda: el_figures() + [f"results/tables/expertlens_{t}.md" for t in EL_TABLES]
)
