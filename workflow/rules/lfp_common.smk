# Learned Feedback Patterns after fine-tuning: the runs, registrations and helpers of the SAE,
# probe, base-control, validation and table rule files (sae.smk ... lfp_tables.smk; figures.smk).
# Rule files hold no functions (snakemake --lint), so each file's own helpers are here too.
# lfp_section_tasks(config, part): lfp.<part>.tasks, unset every task (one owner of that default).
from lensflow.core.defaults import lfp_section_tasks

LFP_RUNS = FT_RUNS  # every tuned (model, task)
# Wildcard constraints: a tuned model's base, a fine-tuning task.
LFP_MODEL_CHOICE = registry_choice({m for m, _ in LFP_RUNS})
FT_TASK_CHOICE = registry_choice(FT["tasks"])
if LFP["explainer"]["backend"] == "local":
    EXTRA_USED_MODELS += [LFP["explainer"]["model"]]
if LFP["triples"]["rewriter"]["backend"] == "local":
    EXTRA_USED_MODELS += [LFP["triples"]["rewriter"]["model"]]


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


def lfp_variants(model, task):
    """SAE variant name -> settings (lensflow.lfp.sae.train.Variant) for one tuned model."""
    sae, abl = LFP["sae"], LFP["ablations"]
    small, big = sae["widths"]
    alpha = sae["alpha_by_model"].get(model, sae["alpha"])
    base = dict(tied=sae["tied"], alpha=alpha, layers="highest")
    out = {"n": dict(base, width=small), "2n": dict(base, width=big)}
    if task not in lfp_section_tasks(config, "ablations"):
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


def lfp_has_l1_sweep(model, task):
    """Whether this run trains the L1 sweep (Fig. 8): only then is its figure drawn."""
    return any(v.startswith("l1-") for v in lfp_variants(model, task))


def lfp_sae_files(model, task):
    return [
        f"results/lfp/{model}/{task}/sae/{v}_metrics.parquet"
        for v in lfp_variants(model, task)
    ]


# --- sae.smk ---
def lfp_selections(model, task):
    """Layer selections (layers.json keys) whose activations the variants need."""
    return sorted({v["layers"] for v in lfp_variants(model, task).values()})


# --- probes.smk ---
def lfp_triples_table(task):
    """The table a task's triples are drawn from: lfp.triples.data[task] (the paper: a test split
    the policy was not trained on), else the task's own training table."""
    name = LFP["triples"]["data"].get(task)
    return f"results/data/{name}.parquet" if name else lfp_task_table(task)


def lfp_rewriter(task):
    """How a task's triples are written: VADER substitution needs no LLM; hh / toxic rewrites use
    lfp.triples.rewriter (template, local or openai)."""
    if lfp_kind(task) == "vader":
        return {"backend": "template"}
    return LFP["triples"]["rewriter"]


def lfp_local_rewriter(wc):
    """The local rewriter's registry name, for model_mem_mb (None: templates or an endpoint)."""
    rw = lfp_rewriter(wc.task)
    return rw["model"] if rw["backend"] == "local" else None


def lfp_rewriter_input(wc):
    """The local rewriter's model folder; nothing for templates or an HTTP endpoint."""
    name = lfp_local_rewriter(wc)
    return [model_dir(name)] if name else []


# --- validation.smk ---
def lfp_local_explainer(wc=None):
    """The local explainer's registry name, for model_mem_mb (None: an HTTP endpoint)."""
    ex = LFP["explainer"]
    return ex["model"] if ex["backend"] == "local" else None


def lfp_explainer_input(wc):
    """The local explainer's model folder; nothing for an HTTP endpoint."""
    name = lfp_local_explainer()
    return [model_dir(name)] if name else []


LFP_TABLES = [
    "probes",
    "words",
    "explanations",
    "detection",
    "activity",
    "ablation",
    "claims",
]


def lfp_targets():
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
            for name in ["sae_training", "overlap"]
            + (["l1_sweep"] if lfp_has_l1_sweep(m, t) else [])
        ]
    )


STAGE_TARGETS.append(lfp_targets)
