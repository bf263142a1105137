"""Explain each high-overlap feature and label it related or not to the task (LFP §3.4, Tables 1/8).

Snakemake rule `lfp_explain`: input.features (records text per feature), input.explainer (local
model folder, or nothing for an OpenAI-compatible endpoint); params: model, explainer (backend,
model, base_url, api_key_env, timeout, max_retries, max_new_tokens), description (the task in plain
language), cache_dir (every response cached there), seed -> output[0] (layer, feature, cosine,
explanation, related, answer). The API key is read from the environment only, never written.
"""

from lensflow.core import io
from lensflow.core.runtime import pick_device, seed_everything, setup_logging
from lensflow.lfp.validation.explanations import explain_table, make_client


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    seed_everything(p.seed)
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    features = io.read_table(sm.input.features)
    client = make_client(p.explainer, p.cache_dir, list(sm.input.explainer), device)
    out = explain_table(client, features, p.description)
    meta = {"model": p.model, "seed": p.seed, "backend": p.explainer["backend"], "explainer": p.explainer["model"],
            "description": p.description}
    io.write_table(out, sm.output[0], meta)
    stats = {k: getattr(client, k, None) for k in ("hits", "misses", "http_calls")}
    log.info("%d features explained; %d related, %d unlabelled; cache %s", len(out), int(out["related"].sum()),
             int(out["related"].isna().sum()), stats)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
