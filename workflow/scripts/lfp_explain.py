"""Explain each high-overlap feature and label it related or not to the task (LFP §3.4, Tables 1/8).

Snakemake rule `lfp_explain`: input.features (records text per feature), input.explainer (local
model folder, or nothing for an OpenAI-compatible endpoint); params: model, explainer (backend,
model, base_url, api_key_env, timeout, max_retries, max_new_tokens), description (the task in plain
language), cache_dir (every response cached there), seed -> output[0] (layer, feature, cosine,
explanation, related, answer). The API key is read from the environment only, never written.
"""

import pandas as pd

from lensflow import io, models
from lensflow.explain import LocalClient, OpenAIClient, explain_features
from lensflow.runtime import pick_device, seed_everything, setup_logging


def client_for(sm, device):
    ex = sm.params.explainer
    if ex["backend"] == "openai":
        return OpenAIClient(ex["base_url"], ex["model"], cache_dir=sm.params.cache_dir,
                            api_key_env=ex.get("api_key_env"), timeout=ex["timeout"], max_retries=ex["max_retries"],
                            max_tokens=ex["max_new_tokens"])
    model, tok, _ = models.load(sm.input.explainer[0], device=device)
    return LocalClient(model, tok, device=device, max_new_tokens=ex["max_new_tokens"], cache_dir=sm.params.cache_dir,
                       model_id=f"local:{ex['model']}")


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    seed_everything(p.seed)
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    features = io.read_table(sm.input.features)
    client = client_for(sm, device)
    tables = []
    for layer, g in features.groupby("layer", sort=True):
        records = dict(zip(g["feature"], g["records_text"]))
        tables.append(explain_features(client, records, int(layer), p.description))
    if not tables:  # every SAE feature dead: nothing to explain, and the tables downstream say so
        log.warning("no live high-overlap feature to explain")
        tables = [pd.DataFrame({"layer": pd.Series(dtype="int64"), "feature": pd.Series(dtype="int64"),
                                "explanation": pd.Series(dtype="str"), "related": pd.Series(dtype="boolean"),
                                "answer": pd.Series(dtype="str")})]
    out = pd.concat(tables, ignore_index=True).merge(features[["layer", "feature", "cosine"]], on=["layer", "feature"])
    meta = {"model": p.model, "seed": p.seed, "backend": p.explainer["backend"], "explainer": p.explainer["model"],
            "description": p.description}
    io.write_table(out, sm.output[0], meta)
    stats = {k: getattr(client, k, None) for k in ("hits", "misses", "http_calls")}
    log.info("%d features explained; %d related, %d unlabelled; cache %s", len(out), int(out["related"].sum()),
             int(out["related"].isna().sum()), stats)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
