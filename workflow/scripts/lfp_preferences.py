"""Synthetic DPO preference pairs (offline stand-in for HH-RLHF / toxic-dpo), LFP §3.1.

Snakemake rule `lfp_preferences`: input.model (generator folder), input.texts (one or more text
tables: text_id, text); params: spec (its finetune.synthetic_preferences entry: judge "hh" |
"toxic", n_prompts, n_samples, max_new_tokens, temperature, top_p, min_margin, batch_size), seed,
name -> output[0] (Parquet: prompt, chosen, rejected, score_chosen, score_rejected; kind
"preferences", marked synthetic). Prompts whose best and worst answers differ by less than
min_margin are dropped and counted (n_dropped_low_margin). Uses CUDA when the job has a gpu and
CUDA exists.
"""

import time

from lensflow.core import io
from lensflow.core.runtime import model_job
from lensflow.lfp.finetune import preferences


def main(sm):
    log, device, model, tok, manifest = model_job(sm)
    p, sp = sm.params, sm.params.spec
    kind, margin = sp["judge"], sp["min_margin"]
    paths = [sm.input.texts] if isinstance(sm.input.texts, str) else list(sm.input.texts)
    texts = [t for path in paths for t in io.read_table(path, required=["text"])["text"].astype(str)]
    prompts = preferences.make_prompts(kind, texts, sp["n_prompts"], p.seed)

    t0 = time.time()
    samples = preferences.sample_responses(model, tok, prompts, sp["n_samples"], sp["max_new_tokens"],
                                           sp["temperature"], sp["top_p"], p.seed, device, sp["batch_size"])
    secs = time.time() - t0
    log.info("%s: sampled %d prompts x %d answers (%d new tokens max) on %s in %.0f s", p.name, len(prompts),
             sp["n_samples"], sp["max_new_tokens"], device, secs)
    pairs, dropped = preferences.build_pairs(samples, preferences.judge_for(kind), margin)
    log.info("%s: %d pairs kept, %d prompts dropped (margin < %s or tie); mean score chosen %.3f, rejected %.3f",
             p.name, len(pairs), dropped, margin, pairs["score_chosen"].mean(), pairs["score_rejected"].mean())
    if pairs.empty:
        raise ValueError(f"{p.name}: no preference pair survived min_margin={margin} "
                         f"({dropped} prompts dropped); lower min_margin or raise n_samples")
    meta = {"name": p.name, "kind": "preferences", "task": kind, "synthetic": True,
            "substitute_for": preferences.SUBSTITUTE_FOR[kind], "judge": preferences.JUDGE_SUMMARY[kind],
            "chosen_is": "more toxic answer" if kind == "toxic" else "more helpful and harmless answer",
            "generator": manifest.get("name", str(sm.input.model)), "generator_source": manifest.get("source", {}),
            "texts": paths, "n_prompts": len(prompts), "n_samples": sp["n_samples"],
            "max_new_tokens": sp["max_new_tokens"], "temperature": sp["temperature"], "top_p": sp["top_p"],
            "min_margin": margin, "seed": p.seed, "n_rows": len(pairs), "n_dropped_low_margin": dropped,
            "sampling": {"seconds": round(secs, 1), "device": str(device), "batch_size": sp["batch_size"]}}
    io.write_table(pairs, sm.output[0], meta)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
