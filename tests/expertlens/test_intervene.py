"""The causal check: forcing units, the two concept measures, unit choice and the summary."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lensflow.core.hooks import capture
from lensflow.expertlens.causal.check import NEUTRAL_PROMPTS, causal_effect, force_units, pick_units
from lensflow.expertlens.causal.measures import concept_probability, contains_word, generate_samples, generation_rate
from lensflow.expertlens.causal.stats import summarise, t_interval
from tiny_models import tiny_model, tiny_tokenizer

DOWN0 = "model.layers.0.mlp.down_proj"
DOWN1 = "model.layers.1.mlp.down_proj"
PROMPTS = ["the cat sat on", "a dog", "this film was very", "they love the story and"]


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", seed=1), tiny_tokenizer()


def _ids(tok, text="the cat sat on the mat"):
    return tok(text, return_tensors="pt").input_ids


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_force_input_sets_units_and_leaves_others(lm):
    model, tok = lm
    ids = _ids(tok)
    with torch.no_grad(), capture(model, [DOWN0], hook="input") as plain:
        model(ids)
    units = pd.DataFrame({"module": [DOWN0, DOWN0], "unit": [3, 17], "value": [5.0, -2.5]})
    with torch.no_grad(), force_units(model, units, "input"), capture(model, [DOWN0], hook="input") as forced:
        model(ids)
    x, y = plain[DOWN0], forced[DOWN0]  # [1, pos, 32]
    assert torch.all(y[..., 3] == 5.0) and torch.all(y[..., 17] == -2.5)
    keep = [j for j in range(x.shape[-1]) if j not in (3, 17)]
    torch.testing.assert_close(y[..., keep], x[..., keep])
    assert not torch.allclose(x[..., 3], y[..., 3])
    assert _no_hooks(model)


def test_force_output_tensor_and_tuple_modules(lm):
    model, tok = lm
    ids = _ids(tok)
    # up_proj returns a tensor; self_attn returns a tuple (hidden, weights)
    units = pd.DataFrame({"module": ["model.layers.0.mlp.up_proj", "model.layers.1.self_attn"],
                          "unit": [4, 9], "value": [7.0, -3.0]})
    names = list(units["module"])
    with torch.no_grad(), force_units(model, units, "output"), capture(model, names, hook="output") as got:
        model(ids)
    assert torch.all(got[names[0]][..., 4] == 7.0)
    assert torch.all(got[names[1]][..., 9] == -3.0)
    assert _no_hooks(model)


def test_forcing_changes_logits_and_is_undone(lm):
    model, tok = lm
    ids = _ids(tok)
    with torch.no_grad():
        before = model(ids).logits
        with force_units(model, pd.DataFrame({"module": [DOWN1], "unit": [0], "value": [50.0]})):
            during = model(ids).logits
        after = model(ids).logits
    assert not torch.allclose(before, during)
    torch.testing.assert_close(before, after)


def test_hooks_removed_on_error(lm):
    model, tok = lm
    units = pd.DataFrame({"module": [DOWN0], "unit": [1], "value": [1.0]})
    with pytest.raises(RuntimeError, match="boom"):
        with force_units(model, units):
            assert not _no_hooks(model)
            raise RuntimeError("boom")
    assert _no_hooks(model)
    # an error raised inside the hook itself (unit index beyond the width) also cleans up
    bad = pd.DataFrame({"module": [DOWN0], "unit": [999], "value": [1.0]})
    with pytest.raises(IndexError), torch.no_grad(), force_units(model, bad):
        model(_ids(tok))
    assert _no_hooks(model)


def test_bad_units_rejected(lm):
    model, _ = lm
    with pytest.raises(KeyError, match="no module"):
        with force_units(model, pd.DataFrame({"module": ["nope"], "unit": [0], "value": [1.0]})):
            pass
    with pytest.raises(ValueError, match="twice"):
        with force_units(model, pd.DataFrame({"module": [DOWN0, DOWN0], "unit": [2, 2], "value": [1.0, 2.0]})):
            pass
    with pytest.raises(ValueError, match="hook"):
        with force_units(model, pd.DataFrame({"module": [DOWN0], "unit": [2], "value": [1.0]}), "middle"):
            pass
    assert _no_hooks(model)


def test_forcing_reaches_every_kv_cache_step(lm):
    model, tok = lm
    ids = _ids(tok, "the cat")
    units = pd.DataFrame({"module": [DOWN0, DOWN1], "unit": [2, 30], "value": [9.0, 9.0]})
    seen = []
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad(), force_units(model, units):
        handle = model.get_submodule(DOWN0).register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
        try:
            cached = model.generate(ids, use_cache=True, **kw)
        finally:
            handle.remove()
        uncached = model.generate(ids, use_cache=False, **kw)
    assert len(seen) == 6 and [s.shape[1] for s in seen] == [2, 1, 1, 1, 1, 1]  # the cache really was used
    assert all(torch.all(s[..., 2] == 9.0) for s in seen)
    torch.testing.assert_close(cached, uncached)  # forcing new positions only == forcing everything
    with torch.no_grad():
        free = model.generate(ids, use_cache=True, **kw)
    assert not torch.equal(free, cached)


def test_concept_probability_matches_full_logits(lm):
    model, tok = lm
    word = "good film"  # two tokens in the tiny vocabulary
    target = tok(" " + word, add_special_tokens=False).input_ids
    assert len(target) == 2
    got = concept_probability(model, tok, PROMPTS, word, batch_size=3)  # mixed lengths, a ragged last batch
    want = []
    with torch.no_grad():
        for p in PROMPTS:
            ids = tok(p).input_ids
            logits = model(torch.tensor([ids + target])).logits[0]  # [pos, vocab], no padding at all
            probs = torch.softmax(logits.double(), -1)
            want.append(float(probs[len(ids) - 1, target[0]] * probs[len(ids), target[1]]))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.shape == (len(PROMPTS),) and np.all((got > 0) & (got < 1))


def test_contains_word():
    assert contains_word("The Cat sat.", "cat")
    assert not contains_word("cats and concat", "cat")
    assert contains_word("a good film indeed", "good film")


def test_generation_is_seeded_and_leaves_global_rng(lm):
    model, tok = lm
    kw = dict(max_new_tokens=5, n_samples=4, batch_size=5)
    a = generate_samples(model, tok, PROMPTS, seed=3, **kw)
    torch.manual_seed(123)
    b = generate_samples(model, tok, PROMPTS, seed=3, **kw)
    assert torch.rand(1).item() == (torch.manual_seed(123), torch.rand(1).item())[1]
    c = generate_samples(model, tok, PROMPTS, seed=4, **kw)
    assert a == b and a != c
    assert [len(t) for t in a] == [4] * len(PROMPTS)
    rate = generation_rate(model, tok, PROMPTS, "the", seed=3, **kw)
    want = [np.mean([contains_word(t, "the") for t in ts]) for ts in a]
    np.testing.assert_array_equal(rate, want)


def _expertise(n_modules=2, width=32, seed=0):
    rng = np.random.default_rng(seed)
    mods = [f"model.layers.{i}.mlp.down_proj" for i in range(n_modules)]
    df = pd.DataFrame([(m, u) for m in mods for u in range(width)], columns=["module", "unit"])
    return df.assign(ap=rng.random(len(df)), on_p50=rng.normal(size=len(df)))


def test_pick_units_excludes_experts_and_is_seeded():
    ex = _expertise(n_modules=3)
    ex.loc[ex["module"].str.contains("layers.2"), "ap"] = 0.0  # layer 2 holds no expert
    experts, draws = pick_units(ex, k=6, n_random=4, seed=1)
    assert list(experts["ap"]) == sorted(ex["ap"], reverse=True)[:6]
    keys = set(zip(experts["module"], experts["unit"]))
    for d in draws:
        assert len(d) == 6 and not keys & set(zip(d["module"], d["unit"]))
        assert set(d["module"]) <= set(experts["module"])
    again = pick_units(ex, k=6, n_random=4, seed=1)[1]
    assert all(x.equals(y) for x, y in zip(draws, again))
    _, strat = pick_units(ex, k=6, n_random=2, seed=1, stratify=True)
    for d in strat:
        assert d["module"].value_counts().to_dict() == experts["module"].value_counts().to_dict()


def test_causal_effect_shapes_and_statistics(lm):
    model, tok = lm
    res = causal_effect(model, tok, _expertise(), "cat", PROMPTS, k=3, n_random=2, seed=0, n_samples=3,
                        max_new_tokens=4)
    t = res["table"]
    assert len(t) == len(PROMPTS) * (2 + 2)
    assert t.groupby(["condition", "draw"]).size().to_dict() == {("baseline", -1): 4, ("experts", -1): 4,
                                                                ("random", 0): 4, ("random", 1): 4}
    s = res["summary"].set_index(["measure", "condition"])
    assert set(s.index.get_level_values(0)) == {"p", "logp", "gen_rate"}
    base = t[t.condition == "baseline"]["p"].to_numpy()
    assert s.loc[("p", "baseline"), "mean"] == pytest.approx(base.mean())
    rand = t[t.condition == "random"].groupby("prompt_id")["p"].mean().to_numpy()
    assert s.loc[("p", "random"), "mean"] == pytest.approx(rand.mean())
    assert (s["n_prompts"] == 4).all() and (s["k"] == 3).all()
    assert _no_hooks(model)


def test_summary_statistics_against_scipy():
    rng = np.random.default_rng(0)
    n = 12
    base, exp = rng.random(n), rng.random(n) + 0.3
    rand = rng.random((n, 3))
    rows = [("baseline", -1, base), ("experts", -1, exp)] + [("random", d, rand[:, d]) for d in range(3)]
    table = pd.concat([pd.DataFrame({"concept": "x", "condition": c, "draw": d, "prompt_id": np.arange(n), "p": v})
                       for c, d, v in rows])
    s = summarise(table, k=5, n_random=3).set_index("condition")
    lo, hi = stats.t.interval(0.95, n - 1, loc=exp.mean(), scale=stats.sem(exp))
    assert (s.loc["experts", "ci_low"], s.loc["experts", "ci_high"]) == pytest.approx((lo, hi))
    diff = exp - rand.mean(1)
    assert s.loc["experts-random", "mean"] == pytest.approx(diff.mean())
    assert s.loc["experts-random", "p_value"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    r = s.loc["experts/baseline"]
    assert r["mean"] == pytest.approx(exp.mean() / base.mean()) and r["ci_low"] < r["mean"] < r["ci_high"]
    assert t_interval(np.array([1.0]))[1] != t_interval(np.array([1.0]))[1]  # NaN bound for n=1


def test_forcing_units_that_feed_a_token_raises_its_probability():
    """Units whose down_proj column points at the unembedding of "cat" are the 'experts'.

    Their AP is made to follow that direct-logit score, so forcing the top-k to a large value must
    raise P(" cat") far above both baseline and random units forced to the same value, in both
    measures (the sampled one also checks that forcing survives KV-cache generation).
    """
    model, tok = tiny_model("llama", seed=1), tiny_tokenizer()
    cat = tok(" cat", add_special_tokens=False).input_ids[0]
    with torch.no_grad():
        model.lm_head.weight.mul_(30)  # a random init's logits are nearly flat; sharpen them
        w_out = model.get_submodule(DOWN1).weight  # [d_model, d_mlp]
        score = (model.lm_head.weight[cat] * model.model.norm.weight) @ w_out  # [d_mlp]
    ex = pd.DataFrame({"module": DOWN1, "unit": np.arange(len(score)), "ap": score.numpy(), "on_p50": 20.0})
    res = causal_effect(model, tok, ex, "cat", PROMPTS, k=4, n_random=3, seed=0, n_samples=8, max_new_tokens=3)
    s = res["summary"].set_index(["measure", "condition"])["mean"]
    assert s[("p", "experts")] > 0.5 > 5 * s[("p", "baseline")]
    assert s[("p", "experts")] > 5 * s[("p", "random")]
    assert s[("gen_rate", "experts")] > s[("gen_rate", "baseline")] + 0.3
    # and the unit choice really matters: the *lowest*-scoring units push "cat" down
    low = ex.assign(ap=-ex["ap"])
    s_low = causal_effect(model, tok, low, "cat", PROMPTS, k=4, n_random=1)["summary"].set_index(
        ["measure", "condition"])["mean"]
    assert s_low[("p", "experts")] < s[("p", "baseline")]


def test_el_causal_script(tmp_path):
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from lensflow.core import io
    from lensflow.expertlens.expertise_store import write_expertise
    from tiny_models import save_tiny

    folder = save_tiny(tmp_path / "model", "llama")
    ex = pd.concat([_expertise(seed=i).assign(concept=c) for i, c in enumerate(["cat", "dog", "film"])])
    ex.loc[ex["concept"] == "dog", "ap"] += 1.0  # dog has the highest max AP, then ...
    ex.loc[ex["concept"] == "film", "ap"] += 0.5  # ... film
    ex = ex.assign(layer=ex["module"].str.extract(r"\.(\d+)\.")[0].astype(int), kind="mlp.down_proj", off_mean=0.0,
                   on_p90=1.0)
    write_expertise((g for _, g in ex.groupby("module", sort=True)), tmp_path / "expertise.parquet", {},
                    grid=[0.5], taus=[0.5])
    out = SimpleNamespace(table=str(tmp_path / "t.parquet"), summary=str(tmp_path / "s.parquet"))
    params = SimpleNamespace(concepts=[], n_concepts=2, k=3, n_random=2, max_new_tokens=3, n_samples=2,
                             hook="input", seed=0)
    path = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "el_causal.py"
    spec = importlib.util.spec_from_file_location("el_causal", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(SimpleNamespace(input=SimpleNamespace(model=str(folder), expertise=str(tmp_path / "expertise.parquet")),
                                output=out, params=params, log=[str(tmp_path / "log")], resources={},
                                threads=1))
    table, summary = io.read_table(out.table), io.read_table(out.summary)
    assert list(dict.fromkeys(table["concept"])) == ["dog", "film"]
    assert len(table) == 2 * len(NEUTRAL_PROMPTS) * (2 + 2)
    assert set(summary["measure"]) == {"p", "logp", "gen_rate"}
    meta = io.read_metadata(out.summary)
    assert meta["k"] == 3 and meta["concepts"] == ["dog", "film"] and meta["hook"] == "input"
