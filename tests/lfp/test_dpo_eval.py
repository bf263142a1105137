"""DPO on held-out pairs: the split (deterministic, by prompt, disjoint from training by content
hash), the per-pair log-probabilities against a direct computation on a tiny model, the summary
against numpy, and the lfp_dpo -> lfp_dpo_eval scripts end to end."""

import copy
import hashlib
import json
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import save_tiny, tiny_model, tiny_tokenizer
from script_runner import run_script

from lensflow.core import io, models
from lensflow.lfp.finetune.dpo import DPOHyper
from lensflow.lfp.finetune.dpo_eval import (
    add_margins,
    heldout_pairs,
    pair_logps,
    pairs_sha256,
    preference_summary,
    split_pairs,
)

WORDS = "the a cat dog sat on mat good bad film movie great awful plot actor love hate is was".split()


def _pairs(n_prompts=12, seed=0):
    """Pairs over n_prompts distinct prompts; some prompts have two pairs, one a whitespace variant."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_prompts):
        prompt = " ".join(rng.choice(WORDS, 4)) + f" {WORDS[i % len(WORDS)]}" * (1 + i // len(WORDS))
        for k in range(1 + (i % 3 == 0)):
            p = prompt if k == 0 else prompt.replace(" ", "  ", 1)  # same prompt, other spacing
            rows.append((p, " ".join(rng.choice(WORDS, 3)), " ".join(rng.choice(WORDS, 2))))
    return pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"])


def _pair_hash(row) -> str:
    return hashlib.sha256("\0".join((row.prompt, row.chosen, row.rejected)).encode()).hexdigest()


def _key(p):
    return " ".join(p.split())


def test_split_by_prompt_deterministic_and_disjoint():
    pairs = _pairs()
    a, b = split_pairs(pairs, 4, min_train=2, seed=3, task="hh"), split_pairs(pairs, 4, min_train=2, seed=3, task="hh")
    assert a.sizes == b.sizes and a.heldout.equals(b.heldout) and a.train.equals(b.train)
    assert a.sizes["n_heldout_prompts"] == 4 and a.sizes["n_prompts"] == 12
    assert a.sizes["n_heldout"] + a.sizes["n_train"] == len(pairs) == a.sizes["n_pairs"]
    held = {_pair_hash(r) for r in a.heldout.itertuples()}
    train = {_pair_hash(r) for r in a.train.itertuples()}
    assert held and train and not held & train  # disjoint by content hash
    assert not {_key(p) for p in a.heldout["prompt"]} & {_key(p) for p in a.train["prompt"]}  # no prompt on both sides
    assert a.heldout["prompt"].map(_key).nunique() == 4
    # the recorded hashes are the parts' content
    assert a.sizes["heldout_sha256"] == pairs_sha256(a.heldout) and a.sizes["train_sha256"] == pairs_sha256(a.train)
    assert (pairs.iloc[a.heldout["pair_id"]][["prompt", "chosen", "rejected"]].to_numpy()
            == a.heldout[["prompt", "chosen", "rejected"]].to_numpy()).all()
    # another seed holds out other prompts; more held-out prompts keep the first ones (fixed first)
    assert split_pairs(pairs, 4, min_train=2, seed=4, task="hh").sizes["heldout_sha256"] != a.sizes["heldout_sha256"]
    bigger = split_pairs(pairs, 6, min_train=2, seed=3, task="hh")
    assert set(a.heldout["pair_id"]) < set(bigger.heldout["pair_id"])
    with pytest.raises(ValueError, match=r"finetune.dpo_eval.n_prompts.*finetune.tasks.hh.hyper.batch_size"):
        split_pairs(pairs, 11, min_train=4, seed=3, task="hh")


def test_heldout_pairs_are_the_recorded_split():
    pairs = _pairs()
    split = split_pairs(pairs, 4, min_train=2, seed=3, task="toxic")
    manifest = {"name": "tiny-dpo-toxic", "source": {"task": "toxic", "pairs": {"seed": 3, **split.sizes}}}
    heldout, rec = heldout_pairs(pairs, manifest, seed=3)
    assert heldout.equals(split.heldout) and rec == {**split.sizes, "seed": 3}
    with pytest.raises(ValueError, match="records no held-out pair split"):
        heldout_pairs(pairs, {"name": "old", "source": {}}, seed=3)
    with pytest.raises(ValueError, match="seed 3, not 4"):
        heldout_pairs(pairs, manifest, seed=4)
    changed = pairs.copy()
    changed.loc[len(changed) - 1, "chosen"] = "something else"  # the table changed since training
    with pytest.raises(ValueError, match="another pair split"):
        heldout_pairs(changed, manifest, seed=3)


def _direct_logp(model, tok, prompt: str, answer: str) -> float:
    """log pi(answer + EOS | prompt) summed over the answer's tokens, by hand (plain-text DPO data:
    the answer follows the prompt after a space, EOS appended)."""
    p_ids = tok(prompt)["input_ids"]
    ids = tok(prompt + " " + answer + tok.eos_token)["input_ids"]
    assert ids[: len(p_ids)] == p_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()  # [T, V]
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]  # [T-1]
    return float(logp[len(p_ids) - 1:].sum())  # positions predicting the answer's tokens


def test_pair_logps_and_margins_match_a_direct_computation():
    pairs = _pairs(6).assign(pair_id=lambda d: np.arange(len(d)))
    tuned, base, tok = tiny_model(seed=1), tiny_model(seed=0), tiny_tokenizer()
    hyper = DPOHyper(beta=0.3, max_length=64, max_prompt_length=32)
    table, counts = pair_logps(tuned, base, tok, pairs, hyper, batch_size=3, is_chat=False)
    assert counts["n_scored"] == len(pairs) and counts["n_pairs_dropped"] == 0
    assert table["pair_id"].tolist() == pairs["pair_id"].tolist()
    for r in table.itertuples():
        for policy, model in (("base", base), ("tuned", tuned)):
            for side in ("chosen", "rejected"):
                want = _direct_logp(model, tok, r.prompt, getattr(r, side))
                assert getattr(r, f"{policy}_{side}_logp") == pytest.approx(want, abs=1e-4)
    t = add_margins(table, hyper.beta)
    want = hyper.beta * ((t.tuned_chosen_logp - t.base_chosen_logp) - (t.tuned_rejected_logp - t.base_rejected_logp))
    assert np.allclose(t["implicit_margin"], want)
    assert np.allclose(t["loglik_margin_base"], t.base_chosen_logp - t.base_rejected_logp)
    # the base is the reference: its own implicit margin would be exactly 0
    same, _ = pair_logps(copy.deepcopy(base), base, tok, pairs, hyper, batch_size=3, is_chat=False)
    assert np.allclose(add_margins(same, 0.1)["implicit_margin"], 0.0)


def test_preference_summary_against_numpy():
    rng = np.random.default_rng(0)
    n = 40
    t = pd.DataFrame({"implicit_margin": rng.normal(0.2, 1, n), "loglik_margin_base": rng.normal(0, 1, n),
                      "loglik_margin_tuned": rng.normal(0.5, 1, n)})
    s = preference_summary(t, n_boot=500, seed=7).set_index(["measure", "policy"])
    idx = np.random.default_rng(7).integers(0, n, size=(500, n))  # core.stats seed scheme
    acc_b, acc_t = (t.loglik_margin_base > 0).to_numpy(float), (t.loglik_margin_tuned > 0).to_numpy(float)
    for (measure, policy), v in {("implicit_margin", "tuned"): t.implicit_margin.to_numpy(),
                                 ("implicit_accuracy", "tuned"): (t.implicit_margin > 0).to_numpy(float),
                                 ("loglik_accuracy", "base"): acc_b, ("loglik_accuracy", "tuned"): acc_t,
                                 ("loglik_accuracy", "tuned - base"): acc_t - acc_b}.items():
        r = s.loc[(measure, policy)]
        lo, hi = np.percentile(v[idx].mean(axis=1), [2.5, 97.5])
        assert r.value == pytest.approx(v.mean()) and r.n == n
        assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi))
    base = s.loc[("implicit_margin", "base")]
    assert (base.value, base.ci_low, base.ci_high) == (0.0, 0.0, 0.0) and "definition" in base.interval
    assert s.loc[("implicit_accuracy", "base"), "value"] == 0.0


def test_dpo_then_heldout_eval_scripts(tmp_path, monkeypatch):
    """lfp_dpo trains only on pairs of prompts the split left to it; lfp_dpo_eval scores exactly the
    held-out ones, base vs tuned, and records the split."""
    from lensflow.lfp.finetune import dpo

    pairs = _pairs(10)
    io.write_table(pairs, tmp_path / "pairs.parquet", {"synthetic": True})
    base = save_tiny(tmp_path / "base")
    trained = []
    real = dpo.train_dpo

    def spy(model_dir, out_dir, train_pairs, *a, **k):
        trained.append(train_pairs.copy())
        return real(model_dir, out_dir, train_pairs, *a, **k)

    monkeypatch.setattr(dpo, "train_dpo", spy)
    hyper = {"learning_rate": 1e-2, "max_steps": 2, "batch_size": 2, "max_length": 64, "max_prompt_length": 32,
             "warmup_steps": 0}
    run_script("lfp_dpo", NS(input=NS(model=str(base), pairs=str(tmp_path / "pairs.parquet")),
                       output=NS(model=str(tmp_path / "tuned"), log=str(tmp_path / "log.tsv"),
                                 meta=str(tmp_path / "meta.json")),
                       params=NS(model="tiny", task="toxic", hyper=hyper, n_heldout=3, seed=0),
                       log=[str(tmp_path / "train.log")], resources={}, threads=1))
    meta = json.loads((tmp_path / "meta.json").read_text())
    rec = meta["pairs"]["split"]
    assert rec["n_heldout_prompts"] == 3 and rec["n_train"] == len(trained[0]) == meta["n_pairs"]
    assert json.loads((tmp_path / "tuned" / models.MANIFEST).read_text())["source"]["pairs"] == rec

    out = NS(pairs=str(tmp_path / "eval_pairs.parquet"), summary=str(tmp_path / "eval_preferences.parquet"))
    run_script("lfp_dpo_eval", NS(input=NS(base=str(base), tuned=str(tmp_path / "tuned"), pairs=str(tmp_path / "pairs.parquet")),
                            output=out, params=NS(hyper=hyper, batch_size=4, n_boot=200, seed=0),
                            log=[str(tmp_path / "eval.log")], resources={}, threads=1))
    scored = io.read_table(out.pairs)
    assert len(scored) == rec["n_heldout"]
    assert not {_pair_hash(r) for r in scored.itertuples()} & {_pair_hash(r) for r in trained[0].itertuples()}
    assert not set(scored["prompt"].map(_key)) & set(trained[0]["prompt"].map(_key))
    summary = io.read_table(out.summary)
    assert len(summary) == 12 and summary["n"].eq(len(scored)).all()
    assert io.read_metadata(out.summary)["pairs"]["heldout_sha256"] == rec["heldout_sha256"]
    tuned_acc = summary.set_index(["measure", "policy"]).loc[("loglik_accuracy", "tuned"), "value"]
    assert tuned_acc == pytest.approx((scored["loglik_margin_tuned"] > 0).mean())


def test_dpo_eval_claims_follow_the_intervals():
    from lensflow.lfp.claims import dpo_eval_claims

    rng = np.random.default_rng(1)
    good = pd.DataFrame({"implicit_margin": rng.normal(1.0, 0.5, 50), "loglik_margin_base": rng.normal(-0.5, 1, 50),
                         "loglik_margin_tuned": rng.normal(1.0, 0.5, 50)})
    flat = good.assign(implicit_margin=rng.normal(0, 1, 50), loglik_margin_tuned=good.loglik_margin_base)
    summaries = pd.concat([preference_summary(good, n_boot=200).assign(model="m", task="hh"),
                           preference_summary(flat, n_boot=200).assign(model="m", task="toxic")])
    rows = pd.DataFrame(dpo_eval_claims(summaries))
    assert len(rows) == 6 and rows["claim"].str.contains("not in the paper").all()
    assert rows["verdict"].tolist() == ["supported"] * 3 + ["not supported"] * 3
    assert rows.loc[0, "value"] == pytest.approx(good["implicit_margin"].mean())
    assert dpo_eval_claims(pd.DataFrame(columns=["model", "task"])) == []


def test_no_scorable_pair_gives_an_empty_table_and_nan_summary():
    pairs = _pairs(3).assign(pair_id=lambda d: np.arange(len(d)))
    table, counts = pair_logps(tiny_model(seed=1), tiny_model(seed=0), tiny_tokenizer(), pairs,
                               DPOHyper(max_length=64, max_prompt_length=2), is_chat=False)
    assert len(table) == 0 and counts["n_scored"] == 0 and counts["n_pairs_dropped"] == len(pairs)
    s = preference_summary(add_margins(table, 0.1), n_boot=100)
    assert (s["n"] == 0).all() and s.loc[s.policy == "tuned", "ci_low"].isna().all()
