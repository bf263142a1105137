"""Detection scoring of the feature explanations with a random-explanation control (issue 16 item 6).

Snakemake rule `lfp_detection`: input.activations (per-token cache), input.saes (AE_n), input.layers,
input.tokenizer (tuned model folder), input.records (the records shown to the explainer),
input.explanations, input.explainer (local model folder, or nothing for an OpenAI-compatible
endpoint); params: model, explainer, k (contexts of each kind per feature), window, alpha, n_boot,
cache_dir (the explainer's answer cache), seed -> output.answers (one row per context and condition:
activation, quantile, text, answer, score), output.scores (one row per explained feature: accuracy,
control, difference, sign test, beats_control; lensflow.lfp.validation.detection).
"""

import json

import pandas as pd
from transformers import AutoTokenizer

from lensflow.core import io
from lensflow.core.runtime import pick_device, seed_everything, setup_logging
from lensflow.lfp.sae.model import load_saes
from lensflow.lfp.validation.contexts import context_texts, draw_contexts, feature_codes
from lensflow.lfp.validation.detection import feature_scores, run_detection, run_summary
from lensflow.lfp.validation.explanations import make_client
from lensflow.lfp.validation.records import token_table


def contexts_of_run(sm, explanations, records, device):
    """Held-out contexts of every explained feature, with their text, over the run's layers."""
    p = sm.params
    tok = AutoTokenizer.from_pretrained(sm.input.tokenizer)
    saes, _ = load_saes(sm.input.saes, device=device)
    meta = io.read_metadata(sm.input.activations)
    module_of = dict(zip(meta["layers"], meta["modules"]))
    out = []
    for layer in json.loads(open(sm.input.layers).read())["highest"]:
        feats = sorted(explanations.loc[explanations["layer"] == layer, "feature"].astype(int))
        if not feats:
            continue
        tokens, codes = feature_codes(sm.input.activations, module_of[layer], saes[layer], feats)
        mine = records[records["layer"] == layer]
        shown = {int(f): set(g["text_id"].astype(int)) for f, g in mine.groupby("feature")}
        ctx = draw_contexts(tokens, codes, feats, shown, p.k, p.window, p.seed)
        ids = token_table(sm.input.activations, text_ids=ctx["text_id"].unique()) if len(ctx) else None
        out.append(ctx.assign(layer=layer, text=context_texts(ctx, ids, tok, p.window) if len(ctx) else []))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["layer", "feature", "context",
                                                                                "activating", "text"])


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    seed_everything(p.seed)
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    explanations = io.read_table(sm.input.explanations)
    contexts = contexts_of_run(sm, explanations, io.read_table(sm.input.records), device)
    client = make_client(p.explainer, p.cache_dir, list(sm.input.explainer), device)
    answers = run_detection(client, explanations, contexts, p.seed)
    scores = feature_scores(answers, explanations, alpha=p.alpha, n_boot=p.n_boot, seed=p.seed)
    summary = run_summary(scores, n_boot=p.n_boot, seed=p.seed)
    meta = {"model": p.model, "seed": p.seed, "k": p.k, "window": p.window, "alpha": p.alpha, "n_boot": p.n_boot,
            "backend": p.explainer["backend"], "scorer": p.explainer["model"], "summary": summary}
    io.write_table(answers if len(answers) else contexts.iloc[:0], sm.output.answers, meta)
    io.write_table(scores, sm.output.scores, meta)
    stats = {k: getattr(client, k, None) for k in ("hits", "misses", "http_calls")}
    log.info("%s: %d of %d features scored; accuracy %.3f [%.3f, %.3f], control %.3f, diff %.3f [%.3f, %.3f]; "
             "%d beat their control; %d unparseable answers; cache %s", p.model, summary["n_scored"],
             summary["n_features"], summary["accuracy"], summary["accuracy_ci_low"], summary["accuracy_ci_high"],
             summary["control"], summary["diff"], summary["diff_ci_low"], summary["diff_ci_high"],
             summary["n_beats_control"], summary["n_unparsed"], stats)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
