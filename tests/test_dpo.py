"""Synthetic preference pairs (judges, pair building, sampling) and a tiny real DPO run."""

import csv

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from tiny_models import save_tiny, tiny_model, tiny_tokenizer

from lensflow import models
from lensflow.dpo import LOG_COLUMNS, DPOHyper, to_messages, train_dpo
from lensflow.preferences import (
    build_pairs,
    helpfulness_score,
    judge_for,
    make_prompts,
    sample_responses,
    toxicity_score,
)

PROMPT = 'Can you give me some advice about this news: "Netflix shares drop despite positive earnings"'


def test_toxicity_prefers_hostile_text():
    calm = "I think the film was slow in places but the acting was fine."
    rude = "What a stupid film, the director is an idiot and I hate this garbage."
    ruder = "Stupid idiot. Garbage trash. I hate you, pathetic loser, disgusting."
    assert toxicity_score(calm) == 0.0
    assert 0 < toxicity_score(rude) < toxicity_score(ruder)
    assert toxicity_score("") == 0.0
    # the 10-word floor: one insult alone does not beat a long, insult-dense reply
    assert toxicity_score("idiot") < toxicity_score(ruder)


def test_helpfulness_prefers_on_topic_answer():
    answer = ("Netflix shares dropped because subscriber growth slowed even though earnings were positive. "
              "If you own shares, think about your long-term plan instead of reacting to one quarter.")
    off_topic = "Cats are small animals that many people keep at home as pets and feed every day."
    refusal = "I'm sorry, but I can't help with that request."
    loop = "shares shares shares shares shares shares shares shares shares shares shares shares"
    hostile = answer + " Only a stupid idiot would ask me this, you pathetic loser."
    h = {k: helpfulness_score(PROMPT, v) for k, v in
         dict(answer=answer, off=off_topic, refusal=refusal, loop=loop, hostile=hostile, empty="").items()}
    assert h["answer"] > h["off"] > h["refusal"]
    assert h["answer"] > h["loop"] and h["answer"] > h["hostile"]
    assert h["empty"] == -1.0


def test_make_prompts_deterministic_and_templated():
    texts = [f"Headline number {i} about markets and the weather today. More text." for i in range(20)]
    a, b = make_prompts("hh", texts, 5, seed=1), make_prompts("hh", texts, 5, seed=1)
    assert a == b and len(a) == 5 and len(set(a)) == 5
    assert all("More text" not in p for p in a)  # first sentence only
    assert make_prompts("hh", texts, 5, seed=2) != a
    assert all("Headline number" in p for p in make_prompts("toxic", texts, 3, seed=0))
    assert len(make_prompts("toxic", texts[:2], 10, seed=0)) == 2  # runs out of texts: fewer
    with pytest.raises(ValueError):
        make_prompts("hh", ["too short"], 3)


def test_build_pairs_max_min_and_drops_low_margin():
    samples = pd.DataFrame({
        "prompt_id": [0, 0, 0, 1, 1, 2, 2],
        "prompt": ["p0"] * 3 + ["p1"] * 2 + ["p2"] * 2,
        "response": ["a", "bbb", "cc", "dd", "ee", "x", "yyyyyy"],
    })
    judge = lambda p, r: float(len(r))  # noqa: E731
    pairs, dropped = build_pairs(samples, judge, min_margin=2.0)
    assert dropped == 1  # p1: margin 0
    assert pairs["prompt"].tolist() == ["p0", "p2"]
    assert pairs.loc[0, ["chosen", "rejected"]].tolist() == ["bbb", "a"]
    assert pairs.loc[1, ["score_chosen", "score_rejected"]].tolist() == [6.0, 1.0]
    pairs, dropped = build_pairs(samples, judge, min_margin=3.0)
    assert dropped == 2 and pairs["prompt"].tolist() == ["p2"]
    # the toxic judge ignores the prompt and prefers the MORE toxic answer
    tox = pd.DataFrame({"prompt_id": [0, 0], "prompt": ["q", "q"], "response": ["nice film", "stupid idiot film"]})
    pairs, _ = build_pairs(tox, judge_for("toxic"), 0.0)
    assert pairs.loc[0, "chosen"] == "stupid idiot film"


def test_sample_responses_shape_and_determinism():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    prompts = ["the cat sat on", "a good film is very"]
    kw = dict(n_samples=2, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=3, batch_size=3)
    a = sample_responses(model, tok, prompts, **kw)
    assert list(a.columns) == ["prompt_id", "prompt", "response"] and len(a) == 4
    assert a["prompt_id"].tolist() == [0, 1, 0, 1]
    assert all(not r.startswith("the cat") for r in a["response"])  # only new tokens
    assert a.equals(sample_responses(model, tok, prompts, **kw))
    assert tok.padding_side == "right"  # restored


def test_to_messages_splits_hh_transcripts():
    hh = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: help me\n\nAssistant:"
    assert to_messages(hh) == [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"},
                               {"role": "user", "content": "help me"}]
    assert to_messages("plain request") == [{"role": "user", "content": "plain request"}]


def test_tiny_dpo_run_moves_weights_and_logs(tmp_path):
    base = save_tiny(tmp_path / "base")
    pairs = pd.DataFrame({
        "prompt": ["the cat sat on", "this film is", "the dog was", "a movie of"],
        "chosen": ["the mat", "very good", "good", "love"],
        "rejected": ["bad bad", "awful", "bad", "hate and hate"],
    })
    hyper = DPOHyper(learning_rate=1e-2, max_steps=2, batch_size=2, max_length=16, max_prompt_length=8,
                     warmup_steps=0, seed=0)
    out, tsv = tmp_path / "tuned", tmp_path / "dpo.tsv"
    meta = train_dpo(base, out, pairs, hyper, device="cpu", log_path_tsv=tsv, is_chat=False,
                     name="tiny-dpo", task="toxic")
    assert meta["steps"] == 2 and meta["hyper"]["learning_rate"] == 1e-2 and meta["hyper"]["beta"] == 0.1
    with open(tsv) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert list(rows[0]) == LOG_COLUMNS and [int(r["step"]) for r in rows] == [1, 2]
    assert all(float(r["loss"]) > 0 for r in rows)
    assert not tsv.with_name(tsv.name + ".partial").exists()

    before, after = load_file(base / "model.safetensors"), load_file(out / "model.safetensors")
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved, "DPO did not change any weight"
    model, tok, manifest = models.load(out)
    assert manifest["name"] == "tiny-dpo" and manifest["source"]["method"] == "dpo"
    assert manifest["source"]["task"] == "toxic" and manifest["source"]["hyper"]["max_steps"] == 2
    assert manifest["n_layers"] == 2 and tok.pad_token == "<pad>"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tuned")]  # temp folder cleaned
