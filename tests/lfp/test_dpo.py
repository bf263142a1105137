"""Synthetic preference pairs (judges, pair building, sampling) and a tiny real DPO run."""

import csv

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from tiny_models import save_tiny, tiny_model, tiny_tokenizer

from lensflow.core import models
from lensflow.lfp.finetune.dpo import LOG_COLUMNS, DPOHyper, _dataset, fit_prompt, to_messages, train_dpo
from lensflow.lfp.finetune.preferences import (
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


# --- HH prompts under a Gemma-like chat template --------------------------------------------------
# Gemma's instruct template: no system role, strictly alternating user/assistant turns, else it raises.
GEMMA_LIKE_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
LONG_ANSWER = ("Bread needs flour, water, salt and yeast. Mix them, knead the dough for ten minutes, let it rise "
               "for an hour, shape it, let it rise again and bake it in a hot oven until the crust is brown.")
MULTI_TURN = f"\n\nHuman: How do I bake bread?\n\nAssistant: {LONG_ANSWER}\n\nHuman: And how long?\n\nAssistant:"


def byte_tokenizer(template: str | None = GEMMA_LIKE_TEMPLATE):
    """A byte-level BPE tokenizer trained here on a few sentences: it decodes back to the exact text
    (markers and newlines included), as the real models' tokenizers do, so a cut inside a turn
    shows up the way it did on the hub models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([MULTI_TURN, PROMPT, "Knead it well. Bake it. Forty minutes. No idea."], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = template
    return fast


def n_tokens(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_to_messages_merges_repeated_speakers_so_turns_alternate():
    odd = "\n\nHuman: hi\n\nHuman: still there?\n\nAssistant: yes\n\nAssistant: \n\nHuman: good\n\nAssistant:"
    assert to_messages(odd) == [{"role": "user", "content": "hi\n\nstill there?"},
                                {"role": "assistant", "content": "yes"}, {"role": "user", "content": "good"}]


def test_fit_prompt_drops_whole_turns_from_the_front():
    tok = byte_tokenizer()
    turns = to_messages(MULTI_TURN)
    sizes = [n_tokens(tok, m["content"]) for m in turns]
    assert fit_prompt(tok, turns, sum(sizes)) == turns  # fits: untouched
    # one token short: the first user turn goes, and so must the assistant turn after it (never lead with it)
    assert fit_prompt(tok, turns, sum(sizes) - 1) == turns[2:]
    assert fit_prompt(tok, turns, sizes[2]) == turns[2:]
    assert fit_prompt(tok, turns, sizes[2] - 1) is None  # the last user turn alone is too long


def test_hh_prompts_cut_inside_an_assistant_turn_still_alternate():
    tok = byte_tokenizer()
    n = n_tokens(tok, MULTI_TURN) - n_tokens(tok, "\n\nHuman: How do I bake bread?\n\nAssistant:") - 5
    # the old rule (keep the transcript's last n tokens, then split) began inside the assistant turn
    tail = tok.decode(tok(MULTI_TURN, add_special_tokens=False)["input_ids"][-n:])
    assert not tail.startswith("\n\nHuman:") and "\n\nHuman: And how long?" in tail
    long_last = "\n\nHuman: " + " ".join(["Knead it well."] * 40) + "\n\nAssistant:"
    pairs = pd.DataFrame({"prompt": [MULTI_TURN, PROMPT, long_last], "chosen": ["Forty minutes.", "Bake it.", "No."],
                          "rejected": ["No idea.", "No.", "Bake it."]})
    ds, stats = _dataset(pairs, tok, True, n)
    assert stats == {"n_pairs_dropped": 1, "n_prompts_shortened": 1}
    assert [r["prompt"] for r in ds] == [[{"role": "user", "content": "And how long?"}],
                                        [{"role": "user", "content": PROMPT}]]
    for row in ds:  # TRL renders prompt + answer with the template; it must not raise
        tok.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
    plain, _ = _dataset(pairs, tok, False, n)  # plain models: the kept turns, as an HH transcript
    assert plain["prompt"] == ["\n\nHuman: And how long?\n\nAssistant:", PROMPT]
    assert plain["chosen"] == [" Forty minutes.", " Bake it."]


def test_dpo_run_with_a_gemma_like_template_on_multi_turn_hh(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    n = n_tokens(tok, LONG_ANSWER)  # the whole transcript does not fit; its last user turn does
    pairs = pd.DataFrame({"prompt": [MULTI_TURN] * 3 + ["\n\nHuman: " + LONG_ANSWER + " Why?\n\nAssistant:"],
                          "chosen": ["Forty minutes.", "About forty minutes.", "Bake it forty minutes.", "Yes."],
                          "rejected": ["No idea.", "No.", "Knead it well.", "No."]})
    hyper = DPOHyper(learning_rate=1e-2, max_steps=1, batch_size=2, max_length=128, max_prompt_length=n,
                     warmup_steps=0)
    meta = train_dpo(tmp_path / "base", tmp_path / "tuned", pairs, hyper, is_chat=True, name="gemma-like", task="hh")
    assert meta["steps"] == 1 and meta["is_chat"] and meta["n_train_examples"] == 3
    assert meta["prompt_truncation"]["n_pairs_dropped"] == 1
    assert meta["prompt_truncation"]["n_prompts_shortened"] == 3
    assert meta["prompt_truncation"]["max_prompt_length"] == n


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_checkpointing_is_passed_to_the_trainer_and_gives_the_same_step(tmp_path, monkeypatch, checkpointing):
    """hyper.gradient_checkpointing turns the trainer's activation checkpointing on (the smaller DPO
    footprint the capacity plan offers for 2B-class models) and changes no number: one step from the
    same base gives the weights of the run without it."""
    from transformers import PreTrainedModel

    calls = []
    enable = PreTrainedModel.activation_checkpointing_enable
    monkeypatch.setattr(PreTrainedModel, "activation_checkpointing_enable",
                        lambda self, *a, **kw: calls.append(type(self).__name__) or enable(self, *a, **kw))
    base = save_tiny(tmp_path / "base")
    pairs = pd.DataFrame({"prompt": ["the cat sat on", "this film is"], "chosen": ["the mat", "very good"],
                          "rejected": ["bad bad", "awful"]})
    tuned = {}
    for on in sorted({False, checkpointing}):
        hyper = DPOHyper(learning_rate=1e-2, max_steps=1, batch_size=2, max_length=16, max_prompt_length=8,
                         warmup_steps=0, seed=0, gradient_checkpointing=on)
        meta = train_dpo(base, tmp_path / f"tuned-{on}", pairs, hyper, device="cpu", is_chat=False)
        assert meta["gradient_checkpointing"] is on and meta["hyper"]["gradient_checkpointing"] is on
        tuned[on] = load_file(tmp_path / f"tuned-{on}" / "model.safetensors")
    assert bool(calls) == checkpointing
    before = load_file(base / "model.safetensors")
    assert any(not torch.equal(before[k], tuned[checkpointing][k]) for k in before)
    for k in before:
        torch.testing.assert_close(tuned[checkpointing][k], tuned[False][k], rtol=1e-5, atol=1e-7)
