"""Detection scoring of the feature explanations with a random-explanation control (issue 16 item 6).

Snakemake rule `lfp_detection`: input.activations (per-token cache), input.saes (AE_n), input.layers,
input.tokenizer (tuned model folder), input.records (the records shown to the explainer),
input.explanations, input.explainer (local model folder, or nothing for an OpenAI-compatible
endpoint); params: model, explainer, k (contexts of each kind per feature), window, alpha, n_boot,
cache_dir (the explainer's answer cache), seed -> output.answers (one row per context and condition:
activation, quantile, text, answer, score), output.scores (one row per explained feature: accuracy,
control, difference, sign test, beats_control; lensflow.lfp.validation.detection).
"""

from lensflow.core import io
from lensflow.core.runtime import pick_device, seed_everything, setup_logging
from lensflow.lfp.validation.contexts import run_contexts
from lensflow.lfp.validation.detection import feature_scores, run_detection, run_summary
from lensflow.lfp.validation.explanations import make_client


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    seed_everything(p.seed)
    device = pick_device(sm.resources.get("gpu", 0), sm.threads)
    explanations = io.read_table(sm.input.explanations)
    contexts = run_contexts(sm.input.activations, sm.input.saes, sm.input.layers, sm.input.tokenizer, explanations,
                            io.read_table(sm.input.records), p.k, p.window, p.seed, device)
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
