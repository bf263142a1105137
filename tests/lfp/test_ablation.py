"""Zero-ablation of SAE features (lensflow.lfp.validation.ablation): the patch itself, rewards, prefixes, the
sampling run and its table."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from lensflow.lfp.finetune.layers import mlp_modules
from lensflow.lfp.finetune.preferences import helpfulness_score, toxicity_score
from lensflow.lfp.finetune.rewards import vader_reward
from lensflow.lfp.finetune.rl_eval import sample_completions
from lensflow.lfp.sae.model import SparseAutoencoder
from lensflow.lfp.validation.ablation import (ablation_table, prefixes_from_texts, random_features, related_per_module,
                                              run_ablation, sae_patch, task_reward)
from tiny_models import WORDS, tiny_model, tiny_tokenizer

D = 16  # tiny models' hidden size
LEX = {"good": 1.9, "great": 3.1, "love": 3.2, "bad": -2.5, "awful": -2.0, "hate": -2.7}


def _sae(seed=0, d_hidden=32, tied=True):
    return SparseAutoencoder(D, d_hidden, tied=tied, seed=seed)


def _identity_sae():
    """Tied SAE with W_E = [I; -I], b = 0: decode(encode(x)) = relu(x) - relu(-x) = x exactly."""
    sae = SparseAutoencoder(D, 2 * D, tied=True)
    with torch.no_grad():
        sae.W_E.copy_(torch.cat([torch.eye(D), -torch.eye(D)]))  # [2D, D]
    return sae


class _TupleMLP(torch.nn.Module):
    """Returns (hidden, extra) the way some blocks do."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(D, D)

    def forward(self, x):
        return self.lin(x), torch.ones(1)


def _mlp(model, layer=0):
    name = mlp_modules(model, [layer])[0]
    return name, dict(model.named_modules())[name]


@torch.no_grad()
def test_patch_output_is_reconstruction_and_zeroes_codes():
    model = tiny_model("llama")
    name, mlp = _mlp(model, 1)
    sae = _sae(seed=1)
    x = torch.randn(2, 5, D)  # [batch, pos, d] MLP input
    plain = mlp(x)  # [batch, pos, d] no hook
    codes = sae.encode(plain)  # [batch, pos, d_hidden]
    j = int(codes.gt(0).sum(dim=(0, 1)).argmax())  # a feature that is active somewhere
    with sae_patch(model, {name: sae}):
        patched = mlp(x)
    torch.testing.assert_close(patched, sae.decode(codes))
    assert not torch.allclose(patched, plain, atol=1e-4)
    with sae_patch(model, {name: sae}, zero={name: [j]}):
        zeroed = mlp(x)
    manual = codes.clone()
    manual[..., j] = 0.0
    torch.testing.assert_close(zeroed, sae.decode(manual))
    assert not torch.allclose(zeroed, patched)
    # Codes, not reconstruction dims: a zeroed code moves every dim along its decoder atom.
    assert (zeroed - patched).abs().amax(dim=(0, 1)).gt(1e-6).sum() > 1


@torch.no_grad()
def test_zero_all_features_leaves_decoder_bias():
    model = tiny_model("llama")
    name, mlp = _mlp(model)
    sae = _sae()
    torch.nn.init.normal_(sae.b_D)
    with sae_patch(model, {name: sae}, zero={name: list(range(sae.d_hidden))}):
        out = mlp(torch.randn(3, 4, D))
    torch.testing.assert_close(out, sae.b_D.expand(3, 4, D))


@torch.no_grad()
def test_tuple_output_keeps_the_rest():
    holder = torch.nn.Sequential()
    holder.add_module("mlp", _TupleMLP())
    sae = _sae(seed=2)
    x = torch.randn(4, D)
    hidden, extra = holder.mlp(x)
    with sae_patch(holder, {"mlp": sae}, zero={"mlp": [0, 3]}):
        out = holder.mlp(x)
    assert isinstance(out, tuple) and len(out) == 2 and torch.equal(out[1], extra)
    codes = sae.encode(hidden)
    codes[:, [0, 3]] = 0
    torch.testing.assert_close(out[0], sae.decode(codes))


def test_hooks_removed_after_block_and_exception():
    model = tiny_model("llama")
    name, mlp = _mlp(model)
    with sae_patch(model, {name: _sae()}):
        assert len(mlp._forward_hooks) == 1
    assert len(mlp._forward_hooks) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with sae_patch(model, {name: _sae()}):
            raise RuntimeError("boom")
    assert len(mlp._forward_hooks) == 0
    with pytest.raises(ValueError, match="out of range"):
        with sae_patch(model, {name: _sae()}, zero={name: [32]}):
            pass
    with pytest.raises(ValueError, match="without an SAE"):
        with sae_patch(model, {name: _sae()}, zero={"model.other": [0]}):
            pass
    assert len(mlp._forward_hooks) == 0


@torch.no_grad()
def test_patch_changes_logits_and_identity_sae_does_not():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    ids = tok(["the cat sat on the mat", "good film and great plot"], return_tensors="pt", padding=True)
    names = mlp_modules(model, [0, 1])
    base = model(**ids).logits  # [batch, pos, vocab]
    with sae_patch(model, {n: _identity_sae() for n in names}):
        ident = model(**ids).logits
    torch.testing.assert_close(ident, base, atol=1e-5, rtol=1e-5)
    with sae_patch(model, {n: _identity_sae() for n in names}, zero={names[0]: list(range(D))}):
        cut = model(**ids).logits  # positive halves of layer 0's MLP output removed
    assert (cut - base).abs().max() > 1e-6
    with sae_patch(model, {n: _sae(seed=i) for i, n in enumerate(names)}):
        rand = model(**ids).logits
    assert (rand - base).abs().max() > 1e-6
    torch.testing.assert_close(model(**ids).logits, base)  # nothing left behind


def test_task_reward_matches_training_rewards():
    prompts, comps = ["good movie", "the plot"], [" and great", " was awful"]
    np.testing.assert_allclose(task_reward("vader", prompts, comps, LEX),
                               vader_reward(["good movie and great", "the plot was awful"], LEX))
    hh = task_reward("hh", ["how do I cook rice?"], ["Rinse the rice, boil it."])
    assert hh[0] == helpfulness_score("how do I cook rice?", "Rinse the rice, boil it.")
    tox = task_reward("toxic", ["x", "y"], ["you stupid idiot", "have a nice day"])
    np.testing.assert_allclose(tox, [toxicity_score("you stupid idiot"), toxicity_score("have a nice day")])
    assert tox[0] > tox[1]
    with pytest.raises(ValueError, match="unknown task"):
        task_reward("sentiment", prompts, comps, LEX)


def test_prefixes_from_texts(caplog):
    tok = tiny_tokenizer()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=10 if i % 2 else 40)) for i in range(20)]
    pre = prefixes_from_texts(texts, tok, n=6, prefix_tokens=30, seed=1)
    assert len(pre) == 6 and len(set(pre)) == 6
    assert all(len(tok(p, add_special_tokens=False)["input_ids"]) == 30 for p in pre)
    long = [t for t in texts if len(t.split()) >= 30]
    assert all(any(t.startswith(p) for t in long) for p in pre)
    assert pre == prefixes_from_texts(texts, tok, 6, 30, seed=1)
    assert pre != prefixes_from_texts(texts, tok, 6, 30, seed=2)
    with caplog.at_level(logging.WARNING, logger="lensflow"):
        assert len(prefixes_from_texts(texts, tok, 50, 30)) == 10
    assert "only 10 of 20" in caplog.text


def test_random_features_avoid_related_and_match_counts():
    related = {"a": [0, 3, 5], "b": [], "c": [7]}
    draws = random_features(related, {"a": 10, "b": 4, "c": 8}, n_random=5, seed=3)
    assert len(draws) == 5
    for d in draws:
        assert {k: len(v) for k, v in d.items()} == {"a": 3, "b": 0, "c": 1}
        assert all(not set(d[k]) & set(related[k]) for k in related)
        assert all(0 <= j < w for k, w in (("a", 10), ("c", 8)) for j in d[k])
    assert len({tuple(d["a"]) for d in draws}) > 1  # draws differ
    assert draws == random_features(related, {"a": 10, "b": 4, "c": 8}, 5, seed=3)
    with pytest.raises(ValueError, match="only"):
        random_features({"a": [0, 1, 2]}, {"a": 5}, 1)


def test_related_per_module():
    table = pd.DataFrame({"layer": [1, 1, 3, 3, 1], "feature": [4, 2, 0, 9, 4],
                          "related": [True, True, False, True, True]})
    assert related_per_module(["m1", "m3", "m5"], [1, 3, 5], table) == {"m1": [2, 4], "m3": [9], "m5": []}


@pytest.fixture(scope="module")
def ablation_run():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    names = mlp_modules(model, [0, 1])
    saes = {n: _sae(seed=i) for i, n in enumerate(names)}
    related = {names[0]: [1, 2], names[1]: [5]}
    prefixes = ["the film was", "a dog sat on", "this movie is very"]
    kw = dict(kind="vader", lexicon=LEX, n_samples=2, max_new_tokens=4, min_new_tokens=2, n_random=2, seed=5)
    df = run_ablation(model, tok, prefixes, saes, related, **kw)
    return model, tok, names, saes, related, prefixes, kw, df


def test_run_ablation_conditions_and_rewards(ablation_run):
    _, _, names, _, related, prefixes, _, df = ablation_run
    assert list(df.columns) == ["condition", "draw", "prompt_id", "sample", "completion", "reward"]
    counts = df.groupby(["condition", "draw"]).size().to_dict()
    assert counts == {("model", 0): 6, ("sae", 0): 6, ("related", 0): 6, ("random", 0): 6, ("random", 1): 6}
    prompts = [prefixes[i] for i in df["prompt_id"]]
    np.testing.assert_allclose(df["reward"], vader_reward([p + c for p, c in zip(prompts, df["completion"])], LEX))
    zeroed = df.attrs["zeroed"]
    assert zeroed["related"] == {names[0]: [1, 2], names[1]: [5]}
    for d in zeroed["random"]:
        assert {k: len(v) for k, v in d.items()} == {k: len(v) for k, v in related.items()}
        assert all(not set(d[k]) & set(related[k]) for k in related)


def test_run_ablation_is_seeded_and_wired(ablation_run):
    model, tok, names, saes, related, prefixes, kw, df = ablation_run
    again = run_ablation(model, tok, prefixes, saes, related, **kw)
    pd.testing.assert_frame_equal(df, again)
    # Random draw 1 is exactly sampling under the patch with that draw's features zeroed.
    draw = df.attrs["zeroed"]["random"][1]
    with sae_patch(model, saes, draw):
        manual = sample_completions(model, tok, prefixes, n_samples=2, min_new_tokens=2, max_new_tokens=4, seed=5)
    got = df[(df["condition"] == "random") & (df["draw"] == 1)]["completion"].tolist()
    assert got == manual["completion"].tolist()
    plain = sample_completions(model, tok, prefixes, n_samples=2, min_new_tokens=2, max_new_tokens=4, seed=5)
    assert df[df["condition"] == "model"]["completion"].tolist() == plain["completion"].tolist()


def test_run_ablation_empty_related_equals_sae(caplog):
    model, tok = tiny_model("llama", seed=1), tiny_tokenizer()
    names = mlp_modules(model, [0, 1])
    saes = {n: _sae(seed=i) for i, n in enumerate(names)}
    with caplog.at_level(logging.WARNING, logger="lensflow"):
        df = run_ablation(model, tok, ["the cat", "good plot"], saes, {}, "vader", LEX, n_samples=2,
                          max_new_tokens=3, min_new_tokens=1, n_random=1, seed=0)
    assert "equals 'sae'" in caplog.text
    sae, rel = (df[df["condition"] == c].reset_index(drop=True) for c in ("sae", "related"))
    assert sae["completion"].tolist() == rel["completion"].tolist()


def _constructed(seed=0, n_prompts=30, n_samples=2):
    rng = np.random.default_rng(seed)
    units = [(p, s) for p in range(n_prompts) for s in range(n_samples)]
    base = rng.normal(1.0, 1.0, len(units))  # per unit: paired conditions share it
    rows = []
    for cond, draw, shift in [("model", 0, 0.2), ("sae", 0, 0.0), ("related", 0, -0.5), ("random", 0, -0.1),
                              ("random", 1, 0.1), ("random", 2, 0.0)]:
        r = base + shift + rng.normal(0, 0.3, len(units))
        rows += [(cond, draw, p, s, "x", v) for (p, s), v in zip(units, r)]
    df = pd.DataFrame(rows, columns=["condition", "draw", "prompt_id", "sample", "completion", "reward"])
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # row order must not matter


def test_ablation_table_against_numpy():
    df = _constructed()
    tab = ablation_table(df, n_boot=500, seed=4).set_index("condition")
    assert list(tab.index) == ["model", "sae", "related", "random"]
    key = lambda c: df[df["condition"] == c].groupby(["prompt_id", "sample"])["reward"].mean()
    sae = key("sae")
    for cond in ["model", "sae", "related", "random"]:
        sub = df[df["condition"] == cond]
        assert tab.loc[cond, "n"] == len(sub) and tab.loc[cond, "n_units"] == 60
        assert tab.loc[cond, "mean_reward"] == pytest.approx(sub["reward"].mean())  # pooled over draws
        u = key(cond).to_numpy()
        half = sps.t.ppf(0.975, u.size - 1) * u.std(ddof=1) / np.sqrt(u.size)
        assert tab.loc[cond, "ci_low"] == pytest.approx(u.mean() - half)
        d = (key(cond) - sae).to_numpy()  # aligned by (prompt_id, sample)
        assert tab.loc[cond, "diff_vs_sae"] == pytest.approx(d.mean())
        idx = np.random.default_rng(4).integers(0, d.size, size=(500, d.size))
        lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
        assert (tab.loc[cond, "diff_ci_low"], tab.loc[cond, "diff_ci_high"]) == pytest.approx((lo, hi))
    assert tab.loc["sae", "diff_vs_sae"] == 0 and tab.loc["sae", "diff_ci_high"] == 0
    assert tab.loc["related", "diff_ci_high"] < 0  # the -0.5 shift is detected, pairing removes unit noise
    assert tab.loc["related", "diff_ci_high"] - tab.loc["related", "diff_ci_low"] < 0.5
    with pytest.raises(ValueError, match="'sae'"):
        ablation_table(df[df["condition"] != "sae"])
