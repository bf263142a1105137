"""Zero-ablation of task-related SAE features during generation (LFP paper §4.2, Table 6).

The paper replaces each selected MLP's output by its SAE reconstruction with the task-related
features zeroed, samples completions of 30-token prefixes and compares the task's average reward
before and after. The original code got three things wrong, fixed here:
  * it zeroed dimensions of the *reconstruction*; here the *codes* are zeroed before decoding;
  * it loaded the model's weights into the wrong class; here the caller passes the loaded model;
  * it scored teacher-forced argmax tokens; here completions are *sampled* (pure sampling,
    temperature 1, top_k 0, as lensflow.lfp.finetune.rl_eval and the RL training do).

The fair "before" is the SAE reconstruction with nothing zeroed ("sae"): the reconstruction
error alone changes the model, so "model" (no patch) vs "related" would mix two effects. A
"random" control zeroes as many non-related features per module, to tell "these features
matter" from "removing any features hurts". Every condition samples with the same seed (common
random numbers), so differences come from the ablation, not from the sampler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from lensflow.core.hooks import modules_by_name
from lensflow.core.stats import mean_ci

from ..finetune.preferences import helpfulness_score, toxicity_score
from ..finetune.rewards import load_vader_lexicon, make_vader_reward_fn
from ..finetune.rl_eval import sample_completions
from ..sae.model import SparseAutoencoder

log = logging.getLogger("lensflow")

KINDS = ("vader", "hh", "toxic")


def _keep_mask(sae: SparseAutoencoder, zero: Sequence[int], name: str) -> torch.Tensor:
    """[d_hidden] float mask, 0 at the zeroed features, 1 elsewhere (checked against d_hidden)."""
    idx = [int(j) for j in zero]
    bad = [j for j in idx if not 0 <= j < sae.d_hidden]
    if bad:
        raise ValueError(f"features {bad} out of range for the SAE of {name} (d_hidden={sae.d_hidden})")
    mask = torch.ones(sae.d_hidden, dtype=sae.W_E.dtype, device=sae.W_E.device)  # [d_hidden]
    mask[idx] = 0.0
    return mask


def _reconstruct_hook(sae: SparseAutoencoder, mask: torch.Tensor):
    """Forward hook returning decode(encode(out) * mask) in place of the module's output."""

    def hook(module, args, out):
        x = out[0] if isinstance(out, (tuple, list)) else out  # [batch, pos, d]
        w = sae.W_E
        codes = sae.encode(x.to(device=w.device, dtype=w.dtype)) * mask  # [batch, pos, d_hidden]
        x_hat = sae.decode(codes).to(device=x.device, dtype=x.dtype)  # [batch, pos, d]
        if isinstance(out, (tuple, list)):
            return type(out)((x_hat, *out[1:]))
        return x_hat

    return hook


@contextmanager
def sae_patch(model: torch.nn.Module, saes: Mapping[str, SparseAutoencoder],
              zero: Mapping[str, Sequence[int]] | None = None):
    """Replace each named module's output by its SAE reconstruction, `zero[name]` codes set to 0.

    Applies at every position of every forward (with a KV cache, generation runs the MLP on the
    new token only; that token is patched). The module may return a tensor or a tuple whose
    first element is the hidden state. Hooks are removed in a finally block.
    """
    zero = dict(zero or {})
    unknown = sorted(set(zero) - set(saes))
    if unknown:
        raise ValueError(f"features to zero for modules without an SAE: {unknown}")
    modules = modules_by_name(model, list(saes), "sae_patch")
    handles = []
    try:
        for name, sae in saes.items():
            mask = _keep_mask(sae, zero.get(name, ()), name)
            handles.append(modules[name].register_forward_hook(_reconstruct_hook(sae, mask)))
        yield
    finally:
        for h in handles:
            h.remove()


def task_reward(kind: str, prompts: Sequence[str], completions: Sequence[str],
                lexicon: Mapping[str, float] | None = None) -> np.ndarray:
    """The fine-tuning task's reward of each completion [n]; higher = what the task rewards.

    vader: paper eq. 3 on prompt + completion, exactly the RL training reward
    (rewards.make_vader_reward_fn, include_prompt=True); hh: helpfulness_score(prompt, completion);
    toxic: toxicity_score(completion) (the toxic DPO task prefers MORE toxic answers).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
    if kind == "vader":
        fn = make_vader_reward_fn(load_vader_lexicon() if lexicon is None else lexicon, include_prompt=True)
        values = fn(completions=list(completions), prompts=list(prompts))
    elif kind == "hh":
        values = [helpfulness_score(p, c) for p, c in zip(prompts, completions)]
    elif kind == "toxic":
        values = [toxicity_score(c) for c in completions]
    else:
        raise ValueError(f"unknown task {kind!r} (expected one of {KINDS})")
    return np.asarray(values, dtype=np.float64)


def prefixes_from_texts(texts: Sequence[str], tokenizer, n: int, prefix_tokens: int = 30,
                        seed: int = 0) -> list[str]:
    """n texts with >= prefix_tokens tokens, each cut to its first prefix_tokens tokens (paper: 30).

    Texts are visited in a seeded permutation (np.random.default_rng(seed)) and tokenized without
    special tokens; the prefix is the decoded text of those tokens. Fewer than n eligible texts:
    a warning and all there are.
    """
    order = np.random.default_rng(seed).permutation(len(texts))  # [n_texts]
    out: list[str] = []
    chunk = 256
    for lo in range(0, len(order), chunk):
        batch = [texts[i] for i in order[lo : lo + chunk]]
        batch = [t if isinstance(t, str) else "" for t in batch]
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            if len(ids) >= prefix_tokens:
                out.append(tokenizer.decode(ids[:prefix_tokens], skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False))
                if len(out) == n:
                    return out
    log.warning("only %d of %d texts have >= %d tokens (%d prefixes asked for)", len(out), len(texts),
                prefix_tokens, n)
    return out


def related_per_module(modules: Sequence[str], layers: Sequence[int],
                       related_features: pd.DataFrame) -> dict[str, list[int]]:
    """{module name: sorted related feature indices} from a (layer, feature, related) table.

    modules[i] is the MLP of layers[i] (layers.mlp_modules). Layers without related features
    map to [] so every patched module is listed.
    """
    rel = related_features[related_features["related"].astype(bool)]
    return {m: sorted(int(f) for f in rel.loc[rel["layer"] == layer, "feature"].unique())
            for m, layer in zip(modules, layers)}


def random_features(related: Mapping[str, Sequence[int]], d_hidden: Mapping[str, int], n_random: int,
                    seed: int = 0) -> list[dict[str, list[int]]]:
    """n_random control sets: per module as many features as `related` has there, drawn without
    replacement among that module's NON-related features. Draw d uses default_rng([seed, d]) and
    visits modules in the order of `d_hidden`."""
    draws = []
    for d in range(n_random):
        rng = np.random.default_rng([seed, d])
        draw = {}
        for name, width in d_hidden.items():
            taken = set(int(j) for j in related.get(name, ()))
            pool = np.array([j for j in range(int(width)) if j not in taken], dtype=np.int64)
            if len(taken) > pool.size:
                raise ValueError(f"{name}: {len(taken)} related features but only {pool.size} others to draw")
            draw[name] = sorted(int(j) for j in rng.choice(pool, size=len(taken), replace=False))
        draws.append(draw)
    return draws


def run_ablation(model, tokenizer, prefixes: Sequence[str], layers_saes: Mapping[str, SparseAutoencoder],
                 related: Mapping[str, Sequence[int]], kind: str, lexicon: Mapping[str, float] | None = None,
                 n_samples: int = 1, max_new_tokens: int = 20, n_random: int = 3, seed: int = 0,
                 device="cpu", batch_size: int = 32, min_new_tokens: int = 8) -> pd.DataFrame:
    """Sample and score completions under each condition -> DataFrame(condition, draw, prompt_id,
    sample, completion, reward).

    Conditions: "model" (no patch), "sae" (reconstruction, nothing zeroed), "related" (related
    features zeroed), "random" (draws 0..n_random-1, see random_features). Non-random conditions
    have draw 0. All use sampling seed `seed`. The zeroed sets are in `df.attrs["zeroed"]`
    ({"related": {...}, "random": [{...}, ...]}) for the run's manifest.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown task {kind!r} (expected one of {KINDS})")
    related = {name: sorted(int(j) for j in related.get(name, ())) for name in layers_saes}
    if not any(related.values()):
        log.warning("no related features in any module: the 'related' condition equals 'sae'")
    draws = random_features(related, {n: s.d_hidden for n, s in layers_saes.items()}, n_random, seed)
    plan = [("model", 0, None), ("sae", 0, {}), ("related", 0, related)]
    plan += [("random", d, zero) for d, zero in enumerate(draws)]
    frames = []
    for condition, draw, zero in plan:
        gen = dict(n_samples=n_samples, min_new_tokens=min(min_new_tokens, max_new_tokens),
                   max_new_tokens=max_new_tokens, seed=seed, device=device, batch_size=batch_size)
        if zero is None:
            df = sample_completions(model, tokenizer, list(prefixes), **gen)
        else:
            with sae_patch(model, layers_saes, zero):
                df = sample_completions(model, tokenizer, list(prefixes), **gen)
        df["reward"] = task_reward(kind, df["prompt"].tolist(), df["completion"].tolist(), lexicon)
        frames.append(df.assign(condition=condition, draw=draw))
        log.info("ablation %s/%d: mean reward %.3f over %d completions", condition, draw, df["reward"].mean(), len(df))
    out = pd.concat(frames, ignore_index=True)[["condition", "draw", "prompt_id", "sample", "completion", "reward"]]
    out.attrs["zeroed"] = {"related": related, "random": draws}
    return out


def _unit_means(df: pd.DataFrame, condition: str) -> pd.Series:
    """Reward per (prompt_id, sample) unit, averaged over draws (one draw outside "random")."""
    sub = df[df["condition"] == condition]
    return sub.groupby(["prompt_id", "sample"])["reward"].mean()


def _paired_boot(d: np.ndarray, n_boot: int, seed: int, ci: float) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(d) over units (stats' seed scheme: one rng, [n_boot, n])."""
    if d.size == 0:
        return np.nan, np.nan
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))  # [n_boot, n]
    lo, hi = np.percentile(d[idx].mean(axis=1), [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def ablation_table(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Per condition: n (rows), n_units, mean_reward with a t interval, and the paired difference
    vs "sae" with a percentile bootstrap interval over units.

    Unit = (prompt_id, sample); "random" is first averaged over its draws within a unit (the draws
    share prompts and the sampling seed, so they are not independent samples). mean_reward equals
    the pooled mean over all rows when every unit has every draw. Differences use the units present
    in both conditions.
    """
    if "sae" not in set(df["condition"]):
        raise ValueError("ablation_table needs the 'sae' condition as the reference")
    base = _unit_means(df, "sae")
    order = [c for c in ("model", "sae", "related", "random") if c in set(df["condition"])]
    order += sorted(set(df["condition"]) - set(order))
    rows = []
    for cond in order:
        units = _unit_means(df, cond)
        m = mean_ci(units.to_numpy(), ci)
        both = units.index.intersection(base.index)
        d = units.loc[both].to_numpy() - base.loc[both].to_numpy()  # [n_paired]
        lo, hi = _paired_boot(d, n_boot, seed, ci)
        rows.append({"condition": cond, "n": int((df["condition"] == cond).sum()), "n_units": m.n,
                     "mean_reward": m.mean, "ci_low": m.ci_low, "ci_high": m.ci_high,
                     "diff_vs_sae": float(d.mean()) if d.size else np.nan, "diff_ci_low": lo, "diff_ci_high": hi})
    return pd.DataFrame(rows)


def ablation_prompts(kind: str, table: pd.DataFrame, tokenizer, n: int, prefix_tokens: int = 30,
                     seed: int = 0) -> list[str]:
    """The prompts Table 6 samples from: 30-token prefixes of reviews (VADER), or the preference
    prompts as the opening of a "User: ... / Assistant:" exchange (hh / toxic) - the layout the
    SAEs and probes saw (lensflow.lfp.sae.task_texts), so the patched layers get familiar inputs."""
    if kind == "vader":
        return prefixes_from_texts(list(table["text"].dropna().astype(str)), tokenizer, n, prefix_tokens, seed)
    from ..sae.task_texts import exchange

    prompts = list(dict.fromkeys(p.strip() for p in table["prompt"].dropna().astype(str)))
    order = np.random.default_rng(seed).permutation(len(prompts))[:n]
    return [exchange(prompts[i], "").rstrip() for i in order]
