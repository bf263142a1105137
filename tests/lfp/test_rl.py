"""RL fine-tuning for the VADER task: prompts, a tiny real TRL run, and the evaluation helpers."""

import json
import math
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps
from script_runner import run_script

from lensflow.core import models
from lensflow.core.stats import bootstrap_mean, bootstrap_mean_diff
from lensflow.lfp.finetune.prompts import review_prompts
from lensflow.lfp.finetune.rl_eval import reward_comparison, rolling_reward, sample_completions, word_generation_counts
from tiny_models import WORDS, save_tiny, tiny_model, tiny_tokenizer


def _corpus(n=40, seed=0):
    """Texts of tiny-vocabulary words, so the word-level tokenizer knows every token; every
    third one is short (under 200 characters) and must never become a prompt."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=8 if i % 3 == 0 else 60)) for i in range(n)]


def test_review_prompts_lengths_and_determinism():
    tok, texts = tiny_tokenizer(), _corpus()
    prompts = review_prompts(texts, tok, n_prompts=20, min_chars=200, prompt_tokens=(2, 9), seed=3)
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert len(prompts) == 20 and all(2 <= k <= 9 for k in lengths)
    assert len(set(lengths)) > 3  # k really varies per prompt
    long = [t for t in texts if len(t) > 200]
    assert all(any(t.startswith(p) for t in long) for p in prompts)  # prefixes of long reviews only
    assert prompts == review_prompts(texts, tok, 20, 200, (2, 9), seed=3)
    assert prompts != review_prompts(texts, tok, 20, 200, (2, 9), seed=4)
    # A later slice of the same order is disjoint from the first (held-out evaluation).
    later = review_prompts(texts, tok, 6, 200, (2, 9), seed=3, start=20)
    assert later == review_prompts(texts, tok, 26, 200, (2, 9), seed=3)[20:]


def test_review_prompts_too_few_long_reviews():
    with pytest.raises(ValueError, match="min_chars=200"):
        review_prompts(_corpus(), tiny_tokenizer(), n_prompts=100, min_chars=200, seed=0)


@pytest.fixture(scope="module")
def lexicon():
    return {"good": 1.9, "great": 3.1, "love": 3.2, "bad": -2.5, "awful": -2.0, "hate": -2.7}


@pytest.mark.parametrize("method,steps", [("rloo", 2), ("grpo", 1)])
def test_tiny_rl_run_moves_weights_and_logs(tmp_path, method, steps):
    from lensflow.lfp.finetune.rl import TSV_COLUMNS, RLHyper, train_rl

    # Every tiny word scores (distinct values): completions of a group almost surely differ in reward,
    # so the leave-one-out advantages, and hence the gradients, are not all zero.
    dense = {w: float(i % 7 - 3) for i, w in enumerate(WORDS)}
    base = save_tiny(tmp_path / "base")
    before = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    prompts = review_prompts(_corpus(), tiny_tokenizer(), 8, seed=0)
    hyper = RLHyper(learning_rate=1e-2, batch_size=2, num_generations=2, beta=0.5, max_steps=steps,
                    warmup_steps=0, min_new_tokens=2, max_new_tokens=4, seed=0)
    tsv = tmp_path / "log.tsv"
    meta = train_rl(base, tmp_path / "tuned", prompts, dense, method=method, hyper=hyper, log_path_tsv=tsv)

    assert meta["steps"] == steps and meta["hyper"]["learning_rate"] == 1e-2
    assert meta["deviations"][0] == f"PPO -> {method.upper()} (TRL >= 1.0 has no PPO)"
    log = pd.read_csv(tsv, sep="\t")
    assert list(log.columns) == TSV_COLUMNS and log["step"].tolist() == list(range(1, steps + 1))
    assert log["reward_mean"].notna().all() and log["loss"].notna().all()
    assert not (tmp_path / "log.tsv.partial").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tuned")]  # temp folder renamed away

    model, tok, manifest = models.load(tmp_path / "tuned")
    assert manifest["source"]["source"] == "finetune" and manifest["source"]["method"] == method
    assert manifest["n_layers"] == 2
    after = model.state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved, "no weight changed"


def test_sample_completions_deterministic(tmp_path):
    model, tok = tiny_model(), tiny_tokenizer()
    prompts = ["the cat sat", "a very good film and"]
    a = sample_completions(model, tok, prompts, n_samples=3, min_new_tokens=2, max_new_tokens=5, seed=7,
                           device="cpu", batch_size=4)
    b = sample_completions(model, tok, prompts, n_samples=3, min_new_tokens=2, max_new_tokens=5, seed=7,
                           device="cpu", batch_size=4)
    c = sample_completions(model, tok, prompts, n_samples=3, min_new_tokens=2, max_new_tokens=5, seed=8,
                           device="cpu", batch_size=4)
    pd.testing.assert_frame_equal(a, b)
    assert a["completion"].tolist() != c["completion"].tolist()
    assert a["prompt_id"].tolist() == [0, 0, 0, 1, 1, 1] and a["prompt"].iloc[3] == prompts[1]
    n_new = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in a["completion"]]
    assert all(n <= 5 for n in n_new) and tok.padding_side == "right"  # padding side restored


def test_reward_comparison_matches_direct():
    rng = np.random.default_rng(0)
    base, tuned = rng.normal(0, 1, 50), rng.normal(0.5, 1.2, 40)
    df = reward_comparison(base, tuned, n_boot=500, seed=1).set_index("policy")
    half = sps.t.ppf(0.975, 49) * base.std(ddof=1) / math.sqrt(50)
    assert df.loc["base", "mean"] == pytest.approx(base.mean())
    assert df.loc["base", "ci_low"] == pytest.approx(base.mean() - half)
    assert df.loc["tuned", "n"] == 40
    d = df.loc["tuned - base"]
    assert d["mean"] == pytest.approx(tuned.mean() - base.mean())
    assert d["p"] == pytest.approx(sps.ttest_ind(tuned, base, equal_var=False).pvalue)
    ref = bootstrap_mean_diff(tuned, base, n_boot=500, seed=1)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high))


def test_word_generation_counts_hand_count(lexicon):
    texts = ["Good, GOOD and great!", "I hate bad films.", "nothing here", "love, love, love good"]
    df = word_generation_counts(texts, lexicon)
    got = dict(zip(df["word"], df["count"]))
    assert got == {"good": 3, "great": 1, "hate": 1, "bad": 1, "love": 3}
    assert df.iloc[0]["count"] == 3 and df.set_index("word").loc["bad", "value"] == -2.5


def test_rolling_reward():
    log = pd.DataFrame({"step": [1, 2, 3, 4], "reward_mean": [1.0, np.nan, 3.0, 5.0]})
    r = rolling_reward(log, window=2)
    assert r["step"].tolist() == [1, 3, 4] and r["n"].tolist() == [1, 2, 2]
    assert r["rolling_mean"].tolist() == [1.0, 2.0, 4.0] and np.isnan(r["ci_low"].iloc[0])
    half = sps.t.ppf(0.975, 1) * np.std([3.0, 5.0], ddof=1) / math.sqrt(2)
    assert r["ci_high"].iloc[2] == pytest.approx(4.0 + half)


# --- Held-out evaluation prompts, split off before training (issue 12, item 2) ---------------------

def _openings_corpus():
    """Long reviews that often open with the same words, some repeated verbatim: two prompts from
    different reviews can be the same text, and a repeated review gives the same prompt twice."""
    rng = np.random.default_rng(1)
    openings = ["the film was", "this movie is", "a very good", "it was not"]
    texts = [f"{openings[i % 4]} " + " ".join(rng.choice(WORDS, size=60)) for i in range(60)]
    return texts + texts[:10] + ["too short"] * 5


def _split(texts, n_heldout=8, n_train=None, seed=3, **kw):
    from lensflow.lfp.finetune.prompts import split_prompts

    return split_prompts(texts, tiny_tokenizer(), n_heldout, n_train, min_train=kw.pop("min_train", 4),
                         min_chars=200, prompt_tokens=(2, 4), seed=seed, task="vader", **kw)


def test_heldout_prompts_are_fixed_before_training_and_never_trained_on():
    texts = _openings_corpus()
    epoch = _split(texts)  # max_steps: 0 -> one epoch: training takes everything that is left
    assert len(epoch.heldout) == 8 and epoch.train
    # By content: no held-out prompt text is ever a training prompt (the openings make some collide).
    assert not set(epoch.heldout) & set(epoch.train)
    assert epoch.sizes["n_train_dropped_as_heldout"] > 0
    # Fixed before training: the held-out part does not depend on how many prompts training takes.
    assert _split(texts, n_train=12).heldout == epoch.heldout
    assert _split(texts, n_train=12).train == epoch.train[:12]
    assert _split(texts, seed=4).heldout != epoch.heldout  # deterministic from the seed, and only it
    assert _split(texts) == epoch
    long = {t for t in texts if len(t) > 200}
    assert all(any(t.startswith(p) for t in long) for p in epoch.heldout + epoch.train)
    s = epoch.sizes  # the sizes go into the outputs' metadata
    assert s["n_texts"] == 75 and s["n_unique_long"] == 60 and s["n_heldout"] == 8
    assert s["n_train"] == len(epoch.train) and s["n_unused"] == 0
    assert s["n_train"] + s["n_train_dropped_as_heldout"] + 8 == 60


def test_split_too_small_names_the_keys():
    texts = _openings_corpus()
    for kw in ({"n_heldout": 58}, {"n_heldout": 8, "n_train": 60}):
        with pytest.raises(ValueError) as err:
            _split(texts, **kw)
        msg = str(err.value)
        for key in ("finetune.eval.n_prompts", "finetune.tasks.vader.hyper.max_steps",
                    "finetune.tasks.vader.hyper.batch_size", "finetune.min_chars"):
            assert key in msg, msg
        assert "60 distinct reviews" in msg, msg


def test_train_prompt_count():
    from lensflow.lfp.finetune.rl import RLHyper, train_prompt_count

    assert train_prompt_count(RLHyper(max_steps=0), None) is None  # one epoch: all that is left
    assert train_prompt_count(RLHyper(max_steps=0), 40) == 40
    # 10 steps, 4 optimizer steps per round of 8 prompts (2 mini-batches x 2 iterations) -> 3 rounds
    h = RLHyper(max_steps=10, batch_size=8, mini_batch_size=4, num_iterations=2)
    assert train_prompt_count(h, None) == 24


class _Params(NS):
    """Snakemake's params: attributes, and .get for the optional ones."""

    def get(self, key, default=None):
        return getattr(self, key, default)


def test_one_epoch_run_then_heldout_eval(tmp_path, monkeypatch):
    """The paper config's case: max_steps 0 trains on every prompt it is given, and the evaluation
    still gets n_prompts prompts the policy never saw."""
    from lensflow.core import io
    from lensflow.lfp.finetune import rl

    texts = _corpus(36)  # 24 long reviews: 6 held out, the rest one epoch of training
    io.write_table(pd.DataFrame({"text_id": range(36), "text": texts}), tmp_path / "texts.parquet", {})
    io.write_table(pd.DataFrame({"token": WORDS, "value": [float(i % 7 - 3) for i in range(len(WORDS))]}),
                   tmp_path / "lexicon.parquet", {})
    base = save_tiny(tmp_path / "base")
    trained = []
    real_train = rl.train_rl

    def spy(model_dir, out_dir, prompts, *a, **k):
        trained.extend(prompts)
        return real_train(model_dir, out_dir, prompts, *a, **k)

    monkeypatch.setattr(rl, "train_rl", spy)
    common = dict(min_chars=200, prompt_tokens=[2, 4], seed=0)
    hyper = {"batch_size": 4, "num_generations": 2, "max_steps": 0, "warmup_steps": 0, "min_new_tokens": 2,
             "max_new_tokens": 3}
    run_script("lfp_rl", NS(input=NS(model=str(base), texts=str(tmp_path / "texts.parquet"),
                               lexicon=str(tmp_path / "lexicon.parquet")),
                      output=NS(model=str(tmp_path / "tuned"), log=str(tmp_path / "log.tsv"),
                                meta=str(tmp_path / "meta.json")),
                      params=NS(model="tiny", task="vader", method="rloo", n_prompts=None, n_heldout=6, hyper=hyper,
                                **common),
                      log=[str(tmp_path / "train.log")], resources={}, threads=1))
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["prompts"]["n_heldout"] == 6 and meta["prompts"]["n_train"] == len(trained) >= 12
    assert meta["steps"] == len(trained) // 4  # one epoch over the training part
    out = NS(rewards=str(tmp_path / "r.parquet"), completions=str(tmp_path / "c.parquet"),
             words=str(tmp_path / "w.parquet"))
    run_script("lfp_rl_eval", NS(input=NS(base=str(base), tuned=str(tmp_path / "tuned"), texts=str(tmp_path / "texts.parquet"),
                                    lexicon=str(tmp_path / "lexicon.parquet")),
                           output=out, log=[str(tmp_path / "eval.log")], resources={}, threads=1,
                           params=_Params(n_prompts=6, n_samples=1, hyper=hyper, **common)))
    comp = io.read_table(out.completions)
    # the training's token limits, from its own hyperparameters (one owner)
    assert io.read_metadata(out.completions)["max_new_tokens"] == 3
    assert comp["prompt"].nunique() <= 6 and len(comp) == 12
    assert not set(comp["prompt"]) & set(trained)  # by content
    recorded = io.read_metadata(out.rewards)["prompts"]
    assert recorded["n_heldout"] == 6 and recorded["n_train"] == len(trained) and recorded["n_eval"] == 6


def test_eval_prompts_are_the_recorded_heldout_part():
    from lensflow.lfp.finetune.rl_eval import heldout_prompts

    texts, tok = _openings_corpus(), tiny_tokenizer()
    split = _split(texts, n_train=12)
    rec = {"seed": 3, "min_chars": 200, "prompt_tokens": [2, 4], **split.sizes}
    manifest = {"name": "tiny-vader-rloo", "source": {"task": "vader", "prompts": rec}}
    prompts, meta = heldout_prompts(texts, tok, manifest, 5, 200, (2, 4), seed=3)
    assert prompts == split.heldout[:5] and meta == {**split.sizes, "n_eval": 5}
    with pytest.raises(ValueError, match="records no held-out prompt split"):
        heldout_prompts(texts, tok, {"name": "old", "source": {"prompts": {"seed": 3, "n_prompts": 12}}}, 5, 200,
                        (2, 4), 3)
    with pytest.raises(ValueError, match="finetune.eval.n_prompts=9 but .* held out only 8"):
        heldout_prompts(texts, tok, manifest, 9, 200, (2, 4), 3)
    with pytest.raises(ValueError, match="other prompt settings"):
        heldout_prompts(texts, tok, manifest, 5, 150, (2, 4), 3)
    with pytest.raises(ValueError, match="another prompt split"):  # the review table changed since training
        heldout_prompts(texts[5:], tok, manifest, 5, 200, (2, 4), 3)


def test_reward_comparison_paired_by_prompt_matches_direct():
    # Prompts differ a lot in their own reward (eq. 3 scores the prompt too); the tuned policy adds
    # 0.3 to every prompt. Paired over prompts the rise is clear; unpaired it drowns.
    rng = np.random.default_rng(3)
    prompt_reward = rng.normal(0, 3, 24)
    ids = np.repeat(np.arange(24), 2)  # two samples per prompt
    base = prompt_reward[ids] + rng.normal(0, 0.3, 48)
    tuned = prompt_reward[ids] + 0.3 + rng.normal(0, 0.3, 48)
    df = reward_comparison(base, tuned, n_boot=500, seed=1, base_prompt_ids=ids, tuned_prompt_ids=ids).set_index("policy")
    d = df.loc["tuned - base"]
    per_prompt = pd.DataFrame({"id": ids, "b": base, "t": tuned}).groupby("id").mean()
    diff = (per_prompt["t"] - per_prompt["b"]).to_numpy()
    assert d["mean"] == pytest.approx(diff.mean()) and d["n"] == 24
    assert d["p"] == pytest.approx(sps.ttest_rel(per_prompt["t"], per_prompt["b"]).pvalue)
    ref = bootstrap_mean(diff, n_boot=500, seed=1)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high))
    assert d["ci_low"] > 0
    unpaired = reward_comparison(base, tuned, n_boot=500, seed=1).set_index("policy").loc["tuned - base"]
    assert unpaired["ci_low"] < 0 < unpaired["ci_high"]
    # a prompt only one policy answered is left out of the pairing
    df2 = reward_comparison(base[:-2], tuned, n_boot=500, seed=1, base_prompt_ids=ids[:-2],
                            tuned_prompt_ids=ids).set_index("policy")
    assert df2.loc["tuned - base", "n"] == 23
