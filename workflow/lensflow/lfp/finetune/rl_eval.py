"""Evaluate a VADER-task policy: sample completions, compare rewards with the base model, count
which lexicon words the policy generates (paper Fig. 4), and smooth the training reward curve.

Sampling matches training (lensflow.lfp.finetune.rl): pure sampling (temperature 1, no top-k, top-p 1),
min_new_tokens..max_new_tokens new tokens, stop at EOS, prompts tokenized the way TRL does
(the tokenizer's default special tokens) and left-padded so every row continues right after
its prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps

from lensflow.core.sampling import Sampling, sample_texts
from lensflow.core.splits import recorded_differences
from lensflow.core.stats import bootstrap_mean, bootstrap_mean_diff, mean_ci

from .prompts import split_prompts
from .rewards import lexicon_word_counts


def sample_completions(model, tokenizer, prompts: Sequence[str], n_samples: int = 1, min_new_tokens: int = 8,
                       max_new_tokens: int = 19, seed: int = 0, device="cpu", batch_size: int = 32,
                       temperature: float = 1.0) -> pd.DataFrame:
    """n_samples pure-sampling completions per prompt -> DataFrame(prompt_id, sample, prompt, completion).

    Rows are prompt-major (prompt 0's samples first). torch is seeded once with `seed`, so the
    same model, prompts, seed, device and batch size give the same completions. Stops at the
    tokenizer's and the model's EOS (as TRL does; lensflow.core.sampling.eos_ids).
    """
    rows = [(i, s, p) for i, p in enumerate(prompts) for s in range(n_samples)]
    # no top-k, no top-p whatever the checkpoint's generation_config says (they ship top_k 50, ...)
    sampling = Sampling(max_new_tokens, temperature, top_k=0, top_p=1.0, min_new_tokens=min_new_tokens)
    torch.manual_seed(seed)
    model.eval()
    completions, _ = sample_texts(model, tokenizer, [p for _, _, p in rows], sampling, batch_size=batch_size,
                                  device=device)
    return pd.DataFrame({"prompt_id": [r[0] for r in rows], "sample": [r[1] for r in rows],
                         "prompt": [r[2] for r in rows], "completion": completions})


def reward_comparison(base_rewards, tuned_rewards, n_boot: int = 1000, ci: float = 0.95,
                      seed: int = 0, base_prompt_ids=None, tuned_prompt_ids=None) -> pd.DataFrame:
    """Tidy (policy, mean, ci_low, ci_high, n, p, interval) rows: base, tuned, and tuned - base.

    base/tuned: t interval of the mean (stats.mean_ci). tuned - base, with prompt ids: paired over
    the held-out prompts both policies answered (per prompt: mean tuned reward - mean base reward),
    a percentile bootstrap over prompts and the paired t-test p; its n is the number of prompts.
    Pairing matters because the reward (eq. 3) scores prompt + completion: the prompt's own words
    are shared by both policies and would otherwise swamp the difference. Without prompt ids:
    difference of means, groups resampled independently, Welch p (stats.bootstrap_mean_diff);
    n = n_tuned + n_base.
    """
    rows = []
    for policy, values in (("base", base_rewards), ("tuned", tuned_rewards)):
        m = mean_ci(values, ci)
        rows.append({"policy": policy, "mean": m.mean, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n,
                     "p": np.nan, "interval": "t"})
    if base_prompt_ids is None or tuned_prompt_ids is None:
        d = bootstrap_mean_diff(tuned_rewards, base_rewards, n_boot=n_boot, ci=ci, seed=seed)
        rows.append({"policy": "tuned - base", "mean": d.diff, "ci_low": d.ci_low, "ci_high": d.ci_high,
                     "n": d.n_a + d.n_b, "p": d.p, "interval": f"bootstrap ({n_boot}), Welch p"})
        return pd.DataFrame(rows)
    per_prompt = pd.concat({"base": pd.Series(np.asarray(base_rewards, float)).groupby(np.asarray(base_prompt_ids)).mean(),
                            "tuned": pd.Series(np.asarray(tuned_rewards, float)).groupby(np.asarray(tuned_prompt_ids)).mean()},
                           axis=1).dropna()  # [prompts answered by both, 2]
    diff = (per_prompt["tuned"] - per_prompt["base"]).to_numpy()  # [n_prompts]
    d = bootstrap_mean(diff, n_boot=n_boot, ci=ci, seed=seed)
    p = float(sps.ttest_rel(per_prompt["tuned"], per_prompt["base"]).pvalue) if len(diff) >= 2 else np.nan
    rows.append({"policy": "tuned - base", "mean": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "n": d.n,
                 "p": p, "interval": f"paired over prompts, bootstrap ({n_boot}), paired t p"})
    return pd.DataFrame(rows)


def word_generation_counts(completions: Sequence[str], lexicon: Mapping[str, float]) -> pd.DataFrame:
    """(word, value, count) for every lexicon word that occurs in the completions, most frequent first.

    Only the generated text is counted (the prompt is not the policy's choice), with the reward's
    tokenization (spaCy, lowercased), so a word counts exactly when it would be rewarded.
    """
    counts = lexicon_word_counts(completions, lexicon)
    df = pd.DataFrame({"word": list(counts), "value": [float(lexicon[w]) for w in counts],
                       "count": [int(c) for c in counts.values()]}, columns=["word", "value", "count"])
    return df.sort_values(["count", "word"], ascending=[False, True], ignore_index=True)


def rolling_reward(log_df: pd.DataFrame, window: int = 10, column: str = "reward_mean",
                   ci: float = 0.95) -> pd.DataFrame:
    """Rolling mean of the per-step reward with a t interval over the window's step means.

    Input: the RL TSV (step, reward_mean, ...). Steps without a reward (mini-batch steps that reuse
    a round) are dropped first. Output: step, reward, rolling_mean, ci_low, ci_high, n (steps in
    the window; the first window-1 rows use what exists, and n = 1 has no interval).
    """
    df = log_df[["step", column]].dropna().sort_values("step").reset_index(drop=True)
    r = df[column].astype(float).rolling(window, min_periods=1)
    n, mean, sd = r.count(), r.mean(), r.std(ddof=1)
    half = sps.t.ppf((1 + ci) / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    half[n < 2] = np.nan
    return pd.DataFrame({"step": df["step"], "reward": df[column].astype(float), "rolling_mean": mean,
                         "ci_low": mean - half, "ci_high": mean + half, "n": n.astype(int)})


def heldout_prompts(texts: Sequence[str], tokenizer, tuned_manifest: dict, n_prompts: int, min_chars: int,
                    prompt_tokens, seed: int) -> tuple[list[str], dict]:
    """The first n_prompts of the held-out prompts the tuned model's training split off, and the
    split's record (sizes, n_eval) for the outputs' metadata.

    The split is recomputed with prompts.split_prompts, the function training used, from what the tuned
    manifest records (source.prompts, written by the lfp_rl script); it must come out the same
    (held-out hash, training count), else the review table or the settings changed since training
    and the prompts would no longer be the ones training left alone: that is an error, as is a
    manifest without the record or an evaluation asking for more than was held out.
    """
    source = tuned_manifest.get("source", {})
    rec, task, name = source.get("prompts") or {}, source.get("task", "<task>"), tuned_manifest.get("name")
    if "heldout_sha256" not in rec:
        raise ValueError(f"tuned model {name!r} records no held-out prompt split (source.prompts in its "
                         f"lensflow_model.json); rerun lfp_rl for it")
    asked = {"seed": seed, "min_chars": min_chars, "prompt_tokens": list(prompt_tokens)}
    changed = recorded_differences(rec, asked, asked)
    if changed:
        raise ValueError(f"tuned model {name!r} was trained with other prompt settings (trained, now): {changed}; "
                         f"rerun lfp_rl")
    if n_prompts > rec["n_heldout"]:
        raise ValueError(f"finetune.eval.n_prompts={n_prompts} but training of {name!r} held out only "
                         f"{rec['n_heldout']} prompts; rerun lfp_rl")
    split = split_prompts(texts, tokenizer, rec["n_heldout"], rec["n_train"], min_train=rec["n_train"],
                          min_chars=min_chars, prompt_tokens=prompt_tokens, seed=seed, task=task)
    differs = recorded_differences(rec, split.sizes, ("heldout_sha256", "n_train"))
    if differs:
        raise ValueError(f"the review table gives another prompt split than training of {name!r} saw "
                         f"(recorded, now): {differs}; rerun lfp_rl")
    return split.heldout[:n_prompts], {**split.sizes, "n_eval": n_prompts}
