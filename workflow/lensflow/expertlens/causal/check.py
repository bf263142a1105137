"""The causal check (ExpertLens item 12, after selfcond): force units, measure the concept.

Experts of a concept are forced to their typical positive response (`on_p50`, the median max-pooled
response on the concept's positive sentences) at every position of every forward, and we measure
how likely the model then is to produce the concept word after neutral prompts. The control forces
k random non-expert units of the same modules to *their own* on_p50 values, so that "some units were
pushed to a typical high value" is matched and only "which units" differs.

Two measures (measures.py): concept_probability, the exact P(" word" | prompt), and generation_rate,
selfcond's fraction of sampled continuations that contain the word.

Statistics (`summarise`, stats.py): per condition the mean over prompts with a t-based 95% CI; the
paired per-prompt differences experts - random and experts - baseline with a t CI and a two-sided
Wilcoxon signed-rank p-value (probabilities are skewed across prompts, so a rank test is safer than
a paired t-test); the ratio of means experts/baseline with a seeded percentile bootstrap over prompts.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from lensflow.core.hooks import modules_by_name

from .measures import concept_logprob, generation_rate
from .stats import summarise

log = logging.getLogger("lensflow")

# Neutral prompt starts: no concept in sight, and many plausible continuations.
NEUTRAL_PROMPTS = [
    "Once upon a time",
    "I think that",
    "The next day",
    "In the morning",
    "She said that",
    "My favourite thing is",
    "He looked at the",
    "We went to the",
    "It was a",
    "They talked about the",
    "The best part was the",
    "Yesterday I saw a",
    "This is a story about",
    "Let me tell you about the",
    "Everyone knows that",
    "At the end of the day",
    "There was a",
    "I would like to",
    "The picture shows a",
    "When I was young",
]


# --------------------------------------------------------------------------- forcing units

def _overwrite(x: torch.Tensor, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """A copy of x [..., d] with x[..., idx] = val at every position (a copy: the original may be
    a tensor another part of the model still reads, e.g. the residual stream)."""
    x = x.clone()
    x[..., idx] = val.to(device=x.device, dtype=x.dtype)  # val [n_units] broadcasts over batch, pos
    return x


def _grouped(units: pd.DataFrame) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (unit indices [n] long, values [n] float)}; a unit listed twice is an error."""
    missing = {"module", "unit", "value"} - set(units.columns)
    if missing:
        raise ValueError(f"force_units needs columns module, unit, value; missing {sorted(missing)}")
    if units.duplicated(["module", "unit"]).any():
        raise ValueError("force_units: a (module, unit) pair is listed twice")
    return {name: (torch.tensor(g["unit"].to_numpy(np.int64)), torch.tensor(g["value"].to_numpy(np.float32)))
            for name, g in units.groupby("module", sort=False)}


@contextmanager
def force_units(model: torch.nn.Module, units: pd.DataFrame, hook: str = "input"):
    """Within the block, every forward sees units[module, unit] := value at every position.

    hook="input" rewrites the module's first positional input (for `*.mlp.down_proj` these are the
    MLP neurons) with a forward pre-hook; hook="output" rewrites what the module returns with a
    forward hook. Each call forces whatever positions it is given, so KV-cache generation (one new
    position per step) is forced at every step. The hooks are removed in a finally block.
    """
    if hook not in ("input", "output"):
        raise ValueError(f"hook must be 'input' or 'output', got {hook!r}")
    groups = _grouped(units)
    modules = modules_by_name(model, list(groups), "force_units")
    handles = []
    try:
        for name, (idx, val) in groups.items():
            if hook == "input":
                def pre(mod, args, idx=idx, val=val):
                    if not args:
                        raise RuntimeError("force_units(hook='input') needs the input passed positionally")
                    return (_overwrite(args[0], idx, val), *args[1:])
                handles.append(modules[name].register_forward_pre_hook(pre))
            else:
                def post(mod, args, out, idx=idx, val=val):
                    if isinstance(out, tuple):  # blocks return (hidden, ...): force the hidden state
                        return (_overwrite(out[0], idx, val), *out[1:])
                    return _overwrite(out, idx, val)
                handles.append(modules[name].register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- the experiment

def causal_concepts(max_ap: pd.Series, concepts, n_concepts: int) -> list[str]:
    """The configured concepts, or the n_concepts with the highest max AP (ties by name).

    max_ap: each concept's highest AP over all units (index = concept), e.g. expertise_store.max_ap.
    """
    if concepts:
        missing = sorted(set(concepts) - set(max_ap.index))
        if missing:
            raise ValueError(f"concepts not in the expertise table: {missing[:10]}")
        return list(concepts)
    best = max_ap.rename("ap").rename_axis("concept").reset_index()
    return best.sort_values(["ap", "concept"], ascending=[False, True])["concept"].head(n_concepts).tolist()


def pick_units(expertise: pd.DataFrame, k: int, n_random: int, seed: int = 0,
               stratify: bool = False) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """(top-k units by AP, n_random draws of k non-experts from the experts' modules).

    Ties in AP are broken by (module, unit) so the choice does not depend on row order. Random
    units are drawn without replacement, uniformly from all units of the modules holding an expert,
    minus the experts; with stratify=True each module gives as many random units as it has experts
    (a layer-matched control).
    """
    table = expertise.sort_values(["ap", "module", "unit"], ascending=[False, True, True], kind="stable")
    if len(table) < 2 * k:
        raise ValueError(f"need at least 2k={2 * k} units, the expertise table has {len(table)}")
    experts = table.iloc[:k]
    rest = table.iloc[k:]
    pool = rest[rest["module"].isin(set(experts["module"]))]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_random):
        if stratify:
            parts = []
            for name, n in experts["module"].value_counts(sort=False).items():
                cand = pool[pool["module"] == name]
                if len(cand) < n:
                    raise ValueError(f"module {name}: {n} experts but only {len(cand)} other units")
                parts.append(cand.iloc[rng.choice(len(cand), n, replace=False)])
            draws.append(pd.concat(parts))
        else:
            if len(pool) < k:
                raise ValueError(f"only {len(pool)} non-expert units in the experts' modules, need k={k}")
            draws.append(pool.iloc[rng.choice(len(pool), k, replace=False)])
    return experts, draws


def _measure(model, tokenizer, prompts, word, units, hook, device, batch_size, gen) -> dict[str, np.ndarray]:
    """The per-prompt measures with `units` forced (None: no intervention)."""
    forced = units[["module", "unit"]].assign(value=units["on_p50"]) if units is not None else None

    def run():
        res = {"logp": concept_logprob(model, tokenizer, prompts, word, device, batch_size)}
        res["p"] = np.exp(res["logp"])
        if gen:
            res["gen_rate"] = generation_rate(model, tokenizer, prompts, word, device=device, **gen)
        return res

    if forced is None:
        return run()
    with force_units(model, forced, hook):
        return run()


def causal_effect(model, tokenizer, expertise_concept: pd.DataFrame, concept: str, prompts: list[str] | None = None,
                  k: int = 50, n_random: int = 5, seed: int = 0, hook: str = "input", device="cpu",
                  batch_size: int = 32, word: str | None = None, max_new_tokens: int = 20, n_samples: int = 0,
                  top_p: float = 1.0, gen_batch_size: int = 256, stratify: bool = False, n_boot: int = 2000) -> dict:
    """Force the top-k experts vs k random units vs nothing; measure the concept word after prompts.

    expertise_concept: one concept's rows [module, unit, ap, on_p50] for all candidate units.
    n_samples=0 skips the generation measure, which costs ~40x the exact one (SmolLM2-135M, 2 CPU
    cores: ~2.7 CPU-s per condition for the exact measure, ~120 CPU-s for 20 prompts x 10 samples x
    20 tokens) and resolves rates only in steps of 1/(prompts*samples). Every condition's generation
    uses the same seed (common random numbers), so paired differences are not inflated by sampling noise.
    Returns {"table": per-prompt rows (condition baseline/experts/random, draw -1 or 0..n_random-1),
             "summary": `summarise` of it, "experts": the forced experts, "random": the draws}.
    """
    prompts = list(prompts or NEUTRAL_PROMPTS)
    word = word or concept
    experts, draws = pick_units(expertise_concept, k, n_random, seed, stratify)
    gen = dict(max_new_tokens=max_new_tokens, n_samples=n_samples, seed=seed, top_p=top_p,
               batch_size=gen_batch_size) if n_samples else None
    args = (model, tokenizer, prompts, word)
    runs = [("baseline", -1, None), ("experts", -1, experts)] + [("random", d, u) for d, u in enumerate(draws)]
    frames = []
    for condition, draw, units in runs:
        res = _measure(*args, units, hook, device, batch_size, gen)
        frames.append(pd.DataFrame({"concept": concept, "word": word, "condition": condition, "draw": draw,
                                    "prompt_id": np.arange(len(prompts)), "prompt": prompts, **res}))
        log.info("%s %s%s: mean p=%.3g%s", concept, condition, f"[{draw}]" if draw >= 0 else "", res["p"].mean(),
                 f", gen_rate={res['gen_rate'].mean():.3f}" if gen else "")
    table = pd.concat(frames, ignore_index=True)
    summary = summarise(table, k=k, n_random=n_random, seed=seed, n_boot=n_boot)
    return {"table": table, "summary": summary, "experts": experts, "random": draws}
