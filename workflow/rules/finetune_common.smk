# Learned Feedback Patterns, fine-tuning: the stage's runs, registrations and helpers (its rules:
# finetune.smk; figures.smk).
# (model, task) runs: every task on its models (default finetune.models).
FT_RUNS = [
    (m, t) for t, spec in FT["tasks"].items() for m in spec.get("models", FT["models"])
]
# Tuned policies are models too: '<base>+<task>' for the shared activation cache.
for _m, _t in FT_RUNS:
    MODEL_DIRS[f"{_m}+{_t}"] = f"results/finetune/{_m}/{_t}/model"
EXTRA_USED_MODELS += sorted({m for m, _ in FT_RUNS})
EXTRA_USED_MODELS += [sp["generator"] for sp in FT["synthetic_preferences"].values()]


def ft_task(task):
    return FT["tasks"][task]


def ft_tasks(methods):
    return [t for t, spec in FT["tasks"].items() if spec["method"] in methods]


def ft_preferences(task):
    """The preference table of a DPO task (a prepared data set or a synthetic one)."""
    return f"results/data/{ft_task(task)['preferences']}.parquet"


def ft_synthetic(wc):
    """The finetune.synthetic_preferences entry of the table {name}."""
    return FT["synthetic_preferences"][wc.name]


def ft_targets():
    figures = ["training", "divergence"]
    return [
        f"results/figures/lfp/{f}_{m}_{t}.png" for m, t in FT_RUNS for f in figures
    ] + ["results/tables/lfp_finetune.md"]


STAGE_TARGETS.append(ft_targets)
