"""Cross-field checks of a lensflow config, stage by stage: settings that the JSON schema accepts
one by one but that do not work together, and the cross-references of the fine-tuning and LFP
sections. The counts and messages they share with the jobs that meet the same shortfall at run time
(held-out texts, training prompts, SAE tokens) are defined here once. lensflow.core.config runs
these checks in validate_config.
"""

from __future__ import annotations

import math

from .defaults import task_hyper


def el_problems(cfg: dict):
    """Messages for ExpertLens data-set settings that are valid one by one but not together:
    what writes a generated data set (a registry model, or an OpenAI-compatible endpoint), and
    what expertlens.categories names (a data set of kind categories, or a .csv/.parquet file)."""
    el = cfg.get("expertlens")
    cats = (el or {}).get("categories")
    if cats in cfg["data"] and cfg["data"][cats]["kind"] != "categories":
        yield f"key 'expertlens.categories': data set '{cats}' is of kind {cfg['data'][cats]['kind']}, not categories"
    elif cats and cats not in cfg["data"] and not cats.endswith((".csv", ".parquet")):
        yield f"key 'expertlens.categories': '{cats}' is neither a data set of kind categories nor a .csv/.parquet file"
    for name, ds in (el or {}).get("datasets", {}).items():
        key = f"expertlens.datasets.{name}"
        if ds["source"] != "generated":
            yield from (f"key '{key}.{k}': only used with source generated"
                        for k in ("generator", "model", "base_url") if k in ds)
        elif ds["backend"] == "local":
            if "generator" not in ds:
                yield f"key '{key}.generator': required for a generated data set with backend local (a registry model)"
            yield from (f"key '{key}.{k}': only used with backend openai" for k in ("model", "base_url") if k in ds)
        else:
            yield from (f"key '{key}.{k}': required with backend openai" for k in ("base_url", "model") if k not in ds)
            if "generator" in ds:
                yield f"key '{key}.generator': only used with backend local (the endpoint's model is `model`)"


def preference_tables(cfg: dict) -> set:
    """Names of preference tables: data sets of kind preferences and synthetic preference sets."""
    synthetic = (cfg.get("finetune") or {}).get("synthetic_preferences", {})
    return {n for n, d in cfg["data"].items() if d["kind"] == "preferences"} | set(synthetic)


def lfp_references(cfg: dict, models: set, texts: set):
    """Cross-references of the LFP stages 3-9 (SAEs, probes, explanations)."""
    lfp = cfg.get("lfp")
    if not lfp:
        return
    tasks = set(cfg.get("finetune", {}).get("tasks", {}))
    for i, t in enumerate(lfp["ablations"].get("tasks", [])):
        yield f"lfp.ablations.tasks.{i}", t, "finetune.tasks", tasks
    for i, t in enumerate(lfp["base_control"].get("tasks", [])):
        yield f"lfp.base_control.tasks.{i}", t, "finetune.tasks", tasks
    for m in lfp["sae"]["alpha_by_model"]:
        yield f"lfp.sae.alpha_by_model.{m}", m, "models", models
    ex = lfp["explainer"]
    if ex["backend"] == "local" and "model" in ex:
        yield "lfp.explainer.model", ex["model"], "models", models
    rw = lfp["triples"]["rewriter"]
    if rw["backend"] == "local" and "model" in rw:
        yield "lfp.triples.rewriter.model", rw["model"], "models", models
    ft_tasks = (cfg.get("finetune") or {}).get("tasks", {})
    for task, name in lfp["triples"]["data"].items():
        key = f"lfp.triples.data.{task}"
        yield key, task, "finetune.tasks", tasks
        if ft_tasks.get(task, {}).get("method") == "dpo":  # rewrites of preference entries
            yield key, name, "preference data or synthetic_preferences", preference_tables(cfg)
        else:  # VADER substitutions in sentences of a text corpus
            yield key, name, "data (kind: texts)", texts


def n_heldout_texts(n_texts: int, heldout_fraction: float) -> int:
    """Texts held out of SAE training among `n_texts` (at least one, at most all but one): the one
    rule, used by lensflow.lfp.sae.data.split_texts and by the config check below."""
    return min(n_texts - 1, max(1, int(round(heldout_fraction * n_texts))))


def lfp_token_shortfall(have: str, need_tokens: int, n_examples: int, batch_size: int) -> str:
    """The one message for "the task texts cannot supply the SAE's training tokens", whether the
    config (at most max_length tokens a text) or lfp_sae (the cache's real tokens) finds it out."""
    return (f"each SAE trains on lfp.sae.n_examples={n_examples} tokens ({need_tokens} in whole batches of "
            f"lfp.sae.batch_size={batch_size}), all distinct, from the training share of the task texts "
            f"(1 - lfp.heldout_fraction of lfp.n_texts), but {have}; raise lfp.n_texts (or lfp.max_length), "
            f"lower lfp.sae.n_examples or lfp.heldout_fraction, or set lfp.sae.repeat_tokens: true to pass over "
            f"the same tokens more than once")


def lfp_token_problems(lfp: dict):
    """The SAE's training tokens against the most the task texts can give: every training text
    (lfp.n_texts less the held-out share) at its full lfp.max_length. Necessary, not sufficient:
    real texts are shorter, and lfp_sae counts the cache's tokens before it trains (lensflow.lfp.sae.data)."""
    sae = lfp["sae"]
    if sae["repeat_tokens"]:
        return
    need = math.ceil(sae["n_examples"] / sae["batch_size"]) * sae["batch_size"]
    n_train = lfp["n_texts"] - n_heldout_texts(lfp["n_texts"], lfp["heldout_fraction"])
    most = n_train * lfp["max_length"]
    if most < need:
        have = (f"{n_train} training texts of at most lfp.max_length={lfp['max_length']} tokens hold at most "
                f"{most}")
        yield "key 'lfp.n_texts': " + lfp_token_shortfall(have, need, sae["n_examples"], sae["batch_size"])


def lfp_problems(cfg: dict):
    """Messages for LFP settings that are valid one by one but not together."""
    lfp = cfg.get("lfp")
    if not lfp:
        return
    yield from lfp_token_problems(lfp)
    if not cfg.get("finetune"):
        yield "key 'lfp': needs a 'finetune' section (the SAEs are trained on the tuned models)"
    ft = cfg.get("finetune") or {}
    for name, t in ft.get("tasks", {}).items():
        if t["method"] == "dpo" and "feedback" not in t and t["preferences"] not in ft["synthetic_preferences"]:
            yield f"key 'finetune.tasks.{name}.feedback': required for the LFP stages (hh or toxic) when the preferences are a data set"
        if "description" not in t:
            yield f"key 'finetune.tasks.{name}.description': required for the LFP stages (the explainer classifies features against it)"
    ex = lfp["explainer"]
    if "model" not in ex:
        yield "key 'lfp.explainer.model': required (a registry model for backend local, the endpoint's model for openai)"
    if ex["backend"] == "openai" and "base_url" not in ex:
        yield "key 'lfp.explainer.base_url': required with backend openai"
    if ex["backend"] == "local" and "base_url" in ex:
        yield "key 'lfp.explainer.base_url': only used with backend openai"
    rw = lfp["triples"]["rewriter"]
    if rw["backend"] != "template" and "model" not in rw:
        yield f"key 'lfp.triples.rewriter.model': required with backend {rw['backend']}"
    if rw["backend"] == "openai" and "base_url" not in rw:
        yield "key 'lfp.triples.rewriter.base_url': required with backend openai"
    if rw["backend"] != "openai" and "base_url" in rw:
        yield "key 'lfp.triples.rewriter.base_url': only used with backend openai"


def finetune_references(cfg: dict, models: set, texts: set):
    """Cross-references of the fine-tuning section (kept apart so `references` stays readable)."""
    ft = cfg.get("finetune")
    if not ft:
        return
    lexica = {n for n, d in cfg["data"].items() if d["kind"] == "lexicon"}
    prefs = preference_tables(cfg)
    for i, m in enumerate(ft["models"]):
        yield f"finetune.models.{i}", m, "models", models
    yield "finetune.lexicon", ft["lexicon"], "data (kind: lexicon)", lexica
    if any(t["method"] != "dpo" for t in ft["tasks"].values()):
        yield "finetune.reviews", ft["reviews"], "data (kind: texts)", texts
    for name, t in ft["tasks"].items():
        for i, m in enumerate(t.get("models", [])):
            yield f"finetune.tasks.{name}.models.{i}", m, "models", models
        if t["method"] == "dpo":
            yield f"finetune.tasks.{name}.preferences", t["preferences"], "preference data or synthetic_preferences", prefs
    for name, sp in ft["synthetic_preferences"].items():
        yield f"finetune.synthetic_preferences.{name}.generator", sp["generator"], "models", models
        for i, c in enumerate(sp["corpora"]):
            yield f"finetune.synthetic_preferences.{name}.corpora.{i}", c, "data (kind: texts)", texts


def rl_train_prompts(hyper: dict, n_prompts: int | None) -> int | None:
    """Training prompts an RL run asks for: `n_prompts` when set, else just enough for max_steps
    optimizer steps; None when max_steps <= 0 (one epoch over every prompt left after the held-out
    part). `hyper` holds every RLHyper field (defaults.task_hyper).
    lensflow.lfp.finetune.rl.train_prompt_count uses this too."""
    if n_prompts is not None:
        return int(n_prompts)
    if hyper["max_steps"] <= 0:
        return None
    per_round = (hyper["batch_size"] // (hyper["mini_batch_size"] or hyper["batch_size"])) * hyper["num_iterations"]
    return math.ceil(hyper["max_steps"] / per_round) * hyper["batch_size"]


def rl_prompt_shortfall(task: str, have: str, n_heldout: int, n_train: int | None, batch_size: int,
                        min_chars: int) -> str:
    """The one message for "the review data cannot supply held-out and training prompts", whether the
    config (max_rows) or the first job that reads the data finds it out; it names every key that helps."""
    train = (f"{n_train} for training" if n_train is not None else
             f"at least one batch of {batch_size} for training (max_steps <= 0: one epoch over the rest)")
    return (f"finetune.tasks.{task}: the RL prompts need {n_heldout + (n_train or batch_size)} distinct reviews longer "
            f"than finetune.min_chars={min_chars} characters, {n_heldout} held out for evaluation "
            f"(finetune.eval.n_prompts) and {train}, but {have}; lower finetune.eval.n_prompts, "
            f"finetune.tasks.{task}.hyper.max_steps / finetune.tasks.{task}.hyper.batch_size (or "
            f"finetune.tasks.{task}.n_prompts) or finetune.min_chars, or use more data")


def dpo_pair_shortfall(task: str, have: str, n_heldout: int, batch_size: int) -> str:
    """The one message for "the preference table cannot supply held-out and training pairs", from the
    config check (table sizes) or the first job that reads the table (lensflow.lfp.finetune.dpo_eval)."""
    return (f"finetune.tasks.{task}: DPO holds out the pairs of {n_heldout} prompts (finetune.dpo_eval.n_prompts) "
            f"and trains on at least one batch of {batch_size} pairs of other prompts, but {have}; lower "
            f"finetune.dpo_eval.n_prompts or finetune.tasks.{task}.hyper.batch_size, or use more pairs "
            f"(synthetic_preferences n_prompts, data max_rows)")


def _dpo_problems(cfg: dict, ft: dict):
    """DPO tasks whose held-out prompts plus one training batch exceed what the preference table can
    hold: a synthetic table's n_prompts (one pair at most per prompt) or a data set's max_rows."""
    for name, t in ft["tasks"].items():
        if t["method"] != "dpo":
            continue
        synthetic, data = ft["synthetic_preferences"].get(t["preferences"]), cfg["data"].get(t["preferences"], {})
        bound = synthetic["n_prompts"] if synthetic else data.get("max_rows")
        batch = task_hyper(t)["batch_size"]
        if bound and ft["dpo_eval"]["n_prompts"] + batch > bound:
            what = "n_prompts" if synthetic else "max_rows"
            where = f"finetune.synthetic_preferences.{t['preferences']}" if synthetic else f"data.{t['preferences']}"
            yield "key 'finetune.dpo_eval.n_prompts': " + dpo_pair_shortfall(
                name, f"{where}.{what} keeps at most {bound}", ft["dpo_eval"]["n_prompts"], batch)


def finetune_problems(cfg: dict):
    """Messages for fine-tuning settings that are valid one by one but not together: RL tasks whose
    held-out evaluation prompts plus training prompts exceed the review set's max_rows, DPO tasks
    whose held-out prompts plus a batch exceed their preference table. Without max_rows the size is
    known only once the data is read; lensflow.lfp.finetune.prompts.split_prompts (RL) and
    dpo_eval.split_pairs (DPO) check it then."""
    ft = cfg.get("finetune")
    if ft:
        yield from _dpo_problems(cfg, ft)
    spec = cfg["data"].get(ft["reviews"]) if ft else None
    if not spec or not spec.get("max_rows"):
        return
    for name, t in ft["tasks"].items():
        if t["method"] == "dpo":
            continue
        hyper = task_hyper(t)
        n_train = rl_train_prompts(hyper, t.get("n_prompts"))
        need = ft["eval"]["n_prompts"] + (n_train or hyper["batch_size"])
        if need > spec["max_rows"]:
            have = f"data.{ft['reviews']}.max_rows keeps at most {spec['max_rows']} reviews"
            yield "key 'finetune.eval.n_prompts': " + rl_prompt_shortfall(
                name, have, ft["eval"]["n_prompts"], n_train, hyper["batch_size"], ft["min_chars"])
