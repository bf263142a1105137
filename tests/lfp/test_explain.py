"""The explainer clients against a fake OpenAI-compatible server on 127.0.0.1 and a tiny local model.

The server is real HTTP (ThreadingHTTPServer in a daemon thread): it records every request, checks
the Authorization header, and can be told to fail, stall past the client's timeout, or echo the
bearer token back, so retry, cache and key-hygiene claims are tested end to end.
"""

from __future__ import annotations

import json
import logging
import time
import traceback

import pandas as pd
import pytest
import torch

from lensflow.lfp.validation.explanations import (
    ExplainerError,
    LocalClient,
    OpenAIClient,
    classify_related,
    clean_explanation,
    explain_features,
    explain_table,
    first_option,
)
from fake_llm_server import ENV, key, server  # noqa: F401 (pytest fixtures)
from tiny_models import tiny_model, tiny_tokenizer

def client(server, tmp_path, **kw):
    opts = dict(cache_dir=tmp_path / "cache", api_key_env=ENV, timeout=2, max_retries=3, backoff=0.01)
    return OpenAIClient(server.url, "fake-model", **{**opts, **kw})


MSG = [{"role": "user", "content": "say something"}]


def all_cache_text(tmp_path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "cache").rglob("*") if p.is_file())


def test_response_is_cached_on_disk_and_reused(server, key, tmp_path):
    server.expected_key = key
    c = client(server, tmp_path)
    first = c.complete(MSG)
    assert first == "echo: say something"
    assert c.complete(MSG) == first
    assert (c.hits, c.misses, c.http_calls, len(server.requests)) == (1, 1, 1, 1)
    fresh = client(server, tmp_path)
    assert fresh.complete(MSG) == first and fresh.http_calls == 0 and len(server.requests) == 1
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".json" and len(files[0].stem) == 64
    assert json.loads(files[0].read_text())["result"]["text"] == first
    # what the server saw is exactly the documented request, authorised with the key
    assert server.requests[0] == {"model": "fake-model", "messages": MSG, "temperature": 0.0, "max_tokens": 64}
    assert server.auth == [f"Bearer {key}"]
    # a different request (other messages, other max_tokens) is a miss
    client(server, tmp_path, max_tokens=5).complete(MSG)
    c.complete([{"role": "user", "content": "other"}])
    assert len(server.requests) == 3 and len(list((tmp_path / "cache").iterdir())) == 3


@pytest.mark.parametrize("status", [500, 429])
def test_retries_succeed_after_two_failures(server, key, tmp_path, status):
    server.fail_first, server.fail_status, server.retry_after = 2, status, (0 if status == 429 else None)
    c = client(server, tmp_path)
    assert c.complete(MSG) == "echo: say something"
    assert c.http_calls == 3 and len(server.requests) == 3
    assert all(r == server.requests[0] for r in server.requests)


def test_persistent_5xx_gives_up_after_max_retries(server, key, tmp_path):
    server.fail_first = 100
    with pytest.raises(ExplainerError, match=r"failed after 3 attempts.*HTTP 500"):
        client(server, tmp_path, max_retries=2).complete(MSG)
    assert len(server.requests) == 3
    assert not list((tmp_path / "cache").glob("*.json"))  # failures are not cached


def test_timeout_is_retried_then_surfaces(server, key, tmp_path):
    server.sleep_first, server.sleep_s = 1, 1.5
    c = client(server, tmp_path, timeout=0.3, max_retries=2)
    assert c.complete(MSG) == "echo: say something"  # first attempt timed out, second answered
    assert c.http_calls == 2
    server.sleep_first = 100
    t0 = time.monotonic()
    with pytest.raises(ExplainerError, match=r"failed after 2 attempts \(timeout 0.3s\).*Timeout"):
        client(server, tmp_path, timeout=0.3, max_retries=1).complete([{"role": "user", "content": "slow"}])
    assert time.monotonic() - t0 < 1.5


def test_client_error_fails_immediately(server, key, tmp_path):
    server.status_always = 400
    with pytest.raises(ExplainerError, match=r"HTTP 400 .*not retried.*nope") as err:
        client(server, tmp_path).complete(MSG)
    assert len(server.requests) == 1
    assert key not in str(err.value)


def test_connection_refused_is_retried(key, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    c = OpenAIClient(f"http://127.0.0.1:{port}", "m", cache_dir=tmp_path / "c", api_key_env=ENV, max_retries=2,
                     backoff=0.01, timeout=1)
    with pytest.raises(ExplainerError, match="failed after 3 attempts.*Connect"):
        c.complete(MSG)
    assert c.http_calls == 3


def test_api_key_never_leaks(server, key, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.expected_key = key
    server.answer = lambda req: f"yes, and your token is {req['_auth']}"  # a hostile server echoes it
    c = client(server, tmp_path)
    text = c.complete(MSG)
    assert key not in text and "[REDACTED]" in text
    assert c.choose([{"role": "user", "content": "related?"}], ["yes", "no"]) == "yes"
    server.fail_first, server.expected_key = 10**6, None  # retries log warnings; then give up
    with pytest.raises(ExplainerError) as err1:
        client(server, tmp_path, max_retries=1).complete([{"role": "user", "content": "x"}])
    server.fail_first, server.status_always = 0, 403  # error body carries the bearer token
    with pytest.raises(ExplainerError) as err2:
        c.complete([{"role": "user", "content": "y"}])
    assert "[REDACTED]" in str(err2.value)
    for err in (err1, err2):
        assert key not in "".join(traceback.format_exception(err.value)) and key not in repr(err.value)
    assert all_cache_text(tmp_path) and key not in all_cache_text(tmp_path)
    assert any("retry 1/1" in r.getMessage() for r in caplog.records)  # the log check below sees real records
    assert key not in caplog.text
    assert not any(key in r.getMessage() or key in repr(r.args) for r in caplog.records)
    assert key not in repr(vars(c))


def test_missing_env_var_is_named_and_nothing_is_sent(server, monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ExplainerError, match=ENV):
        client(server, tmp_path).complete(MSG)
    assert server.requests == []
    keyless = client(server, tmp_path, api_key_env=None)
    assert keyless.complete(MSG) == "echo: say something" and server.auth == [None]


def test_explain_features_over_http_then_from_cache(server, key, tmp_path):
    def answer(req):
        prompt = req["messages"][-1]["content"]
        if "related to the fine-tuning task" in prompt:
            return "Yes." if "explanation: film" in prompt else "Maybe?"
        return "The main thing this feature does is find film titles. And more." if "«film»" in prompt \
            else "generic words"
    server.answer = answer
    records = {2: "a good «film» (10)", 9: "the «cat» (10)"}
    df = explain_features(client(server, tmp_path), records, 3, "generate positive film reviews")
    assert df[["layer", "feature", "explanation", "answer"]].to_dict("list") == {
        "layer": [3, 3], "feature": [2, 9], "explanation": ["film titles.", "generic words"],
        "answer": ["Yes.", "Maybe?"]}
    assert df["related"].iloc[0] is not pd.NA and bool(df["related"].iloc[0])
    assert pd.isna(df["related"].iloc[1])  # unparseable stays <NA>, never False
    again = client(server, tmp_path)
    pd.testing.assert_frame_equal(explain_features(again, records, 3, "generate positive film reviews"), df)
    assert again.http_calls == 0 and again.hits == 4 and len(server.requests) == 4


def test_first_option_and_cleaning():
    assert first_option("No. Yes would be wrong.", ["yes", "no"]) == "no"
    assert first_option("Yes!", ["yes", "no"]) == "yes"
    assert first_option("nothing notable", ["yes", "no"]) is None  # whole words only
    assert clean_explanation('The main thing this feature does is find "movie titles in reviews. Also x.') \
        == "movie titles in reviews."
    assert clean_explanation("  \n") == ""


class ScriptedClient:
    """A stand-in backend answering from fixed rules; records what it was asked."""

    def __init__(self, explanation, verdict):
        self.explanation, self.verdict, self.asked = explanation, verdict, []

    def complete(self, messages):
        self.asked.append(messages)
        return self.explanation

    def choose(self, messages, options):
        self.asked.append(messages)
        return self.verdict


@pytest.mark.parametrize("verdict,expected", [("yes", True), ("no", False), (None, None)])
def test_explain_features_table(verdict, expected):
    backend = ScriptedClient("positive sentiment about films. More text.", verdict)
    records = {7: "the film was «great» (10)", 3: "a «good» (10) movie"}
    df = explain_features(backend, records, 2, "positive reviews")
    assert list(df.columns) == ["layer", "feature", "explanation", "related", "answer"]
    assert df["feature"].tolist() == [3, 7] and (df["layer"] == 2).all()
    assert (df["explanation"] == "positive sentiment about films.").all()
    assert df["related"].dtype == "boolean"
    assert df["related"].isna().all() if expected is None else (df["related"] == expected).all()
    assert "«good» (10)" in backend.asked[0][-1]["content"] and "positive reviews" in backend.asked[1][-1]["content"]
    assert classify_related(backend, "x", "task")[0] is expected


def test_empty_explanation_is_not_labelled():
    df = explain_features(ScriptedClient("   ", "yes"), {1: "«a» (10)"}, 0, "task")
    assert pd.isna(df["related"].iloc[0]) and df["explanation"].iloc[0] == ""


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama"), tiny_tokenizer()


def brute_logprob(model, tok, prompt: str, option: str) -> float:
    """log p(option | prompt) by one unbatched forward pass over prompt + " " + option."""
    p = tok(prompt)["input_ids"]
    full = tok(prompt + " " + option)["input_ids"]
    assert full[: len(p)] == p
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
    return sum(float(logp[t - 1, full[t]]) for t in range(len(p), len(full)))


def test_local_client_complete_choose_and_cache(tiny, tmp_path):
    model, tok = tiny
    msgs = [{"role": "user", "content": "the movie was great"}]
    lc = LocalClient(model, tok, max_new_tokens=6, cache_dir=tmp_path / "lc", model_id="tiny-llama-0")
    text = lc.complete(msgs)
    assert isinstance(text, str) and text == lc.complete(msgs) and (lc.hits, lc.misses) == (1, 1)
    options = ["cat", "dog", "mat", "good"]
    choice = lc.choose(msgs, options)
    prompt = lc.prompt(msgs)
    assert prompt.endswith("Assistant:")  # the tiny tokenizer has no chat template
    # "Cat" etc. are out of the tiny vocabulary: both spellings enter the log-sum-exp
    expected = {o: torch.logsumexp(torch.tensor([brute_logprob(model, tok, prompt, s)
                                                 for s in (o, o.capitalize())]), 0).item() for o in options}
    assert lc.option_logprobs(msgs, options) == pytest.approx(expected, abs=1e-4)
    assert choice == max(options, key=expected.get)
    assert lc.choose(msgs, options) == choice
    again = LocalClient(model, tok, max_new_tokens=6, cache_dir=tmp_path / "lc", model_id="tiny-llama-0")
    again.model = None  # a cache hit must not touch the model
    assert again.complete(msgs) == text and again.choose(msgs, options) == choice and again.misses == 0
    related, raw = classify_related(lc, "cats", "task")
    yes, no = (float(x.split("=")[1]) for x in raw.removeprefix("log p: ").split(", "))
    assert related is None and yes == no  # "yes" and "no" are both <unk> here: a tie is no label
    with pytest.raises(ValueError, match="model_id"):
        LocalClient(model, tok, cache_dir=tmp_path / "x")


def test_local_client_uses_a_chat_template(tiny):
    model, tok = tiny[0], tiny_tokenizer()
    tok.chat_template = ("{% for m in messages %}<s> {{ m['content'] }} </s>\n{% endfor %}"
                         "{% if add_generation_prompt %}the\n{% endif %}")
    lc = LocalClient(model, tok, max_new_tokens=3)
    msgs = [{"role": "system", "content": "a cat"}, {"role": "user", "content": "the dog sat"}]
    assert lc.prompt(msgs) == "<s> a cat </s>\n<s> the dog sat </s>\nthe\n"
    ids = tok(lc.prompt(msgs), add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    vocab = tok.get_vocab()
    scores = lc.option_logprobs(msgs, ["cat", "mat"])  # Cat/Mat are <unk>: logsumexp with the <unk> score
    for o in ("cat", "mat"):
        want = torch.logsumexp(torch.stack([logp[vocab[o]], logp[vocab["<unk>"]]]), 0).item()
        assert scores[o] == pytest.approx(want, abs=1e-4)
    assert isinstance(lc.complete(msgs), str) and lc.hits == 0  # no cache_dir: nothing cached


class Scripted:
    """A client that explains every feature the same way and says yes."""

    def complete(self, messages):
        return "the main thing this feature does is find happy words."

    def choose(self, messages, options):
        return "yes"


def test_explain_table_groups_layers_and_keeps_cosine():
    features = pd.DataFrame({"layer": [3, 1, 1], "feature": [7, 2, 5], "cosine": [0.9, 0.8, 0.7],
                             "records_text": ["a", "b", "c"]})
    out = explain_table(Scripted(), features, "positive sentiment")
    assert list(zip(out["layer"], out["feature"], out["cosine"])) == [(1, 2, 0.8), (1, 5, 0.7), (3, 7, 0.9)]
    assert out["related"].tolist() == [True] * 3 and out["explanation"].eq("happy words.").all()


def test_explain_table_with_no_live_feature_is_empty_but_typed():
    features = pd.DataFrame({"layer": pd.Series(dtype="int64"), "feature": pd.Series(dtype="int64"),
                             "cosine": pd.Series(dtype="float64"), "records_text": pd.Series(dtype="str")})
    out = explain_table(Scripted(), features, "anything")
    assert out.empty and list(out.columns) == ["layer", "feature", "explanation", "related", "answer", "cosine"]
    assert str(out["related"].dtype) == "boolean" and out["layer"].dtype == "int64"


# Gemma's instruct template as the hub ships it (google/gemma-2b-it): no system role, and the turns
# must strictly alternate user/model, else it raises.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)


def gemma_tokenizer():
    """The tiny tokenizer wearing Gemma's chat template."""
    tok = tiny_tokenizer()
    tok.chat_template = GEMMA_TEMPLATE
    return tok


def test_gemma_template_really_refuses_system_and_non_alternating_turns():
    from jinja2.exceptions import TemplateError

    tok = gemma_tokenizer()
    with pytest.raises(TemplateError, match="System role not supported"):
        tok.apply_chat_template([{"role": "system", "content": "a"}, {"role": "user", "content": "b"}],
                                tokenize=False, add_generation_prompt=True)
    with pytest.raises(TemplateError, match="must alternate"):  # so "system -> user" is no fix
        tok.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
                                tokenize=False, add_generation_prompt=True)


def test_render_chat_folds_the_system_message_into_the_first_user_turn():
    from lensflow.core.llm.local import render_chat

    tok = gemma_tokenizer()
    msgs = [{"role": "system", "content": "the cat"}, {"role": "user", "content": "the dog sat"}]
    assert render_chat(tok, msgs) == ("<s><start_of_turn>user\nthe cat\n\nthe dog sat<end_of_turn>\n"
                                      "<start_of_turn>model\n")
    multi = [*msgs, {"role": "assistant", "content": "a mat"}, {"role": "user", "content": "good"}]
    assert render_chat(tok, multi) == ("<s><start_of_turn>user\nthe cat\n\nthe dog sat<end_of_turn>\n"
                                       "<start_of_turn>model\na mat<end_of_turn>\n"
                                       "<start_of_turn>user\ngood<end_of_turn>\n<start_of_turn>model\n")
    assert msgs[1]["content"] == "the dog sat"  # the caller's messages are not modified
    user_only = [{"role": "user", "content": "the dog"}]
    assert render_chat(tok, user_only) == tok.apply_chat_template(user_only, tokenize=False,
                                                                  add_generation_prompt=True)
    # A template with a system role keeps it as its own turn.
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}[assistant]{% endif %}")
    assert render_chat(tok, msgs) == "[system] the cat\n[user] the dog sat\n[assistant]"
    # A template that silently drops the system message gets it folded in too, not lost.
    tok.chat_template = ("{% for m in messages %}{% if m['role'] != 'system' %}[{{ m['role'] }}] "
                         "{{ m['content'] }}\n{% endif %}{% endfor %}")
    assert render_chat(tok, msgs, add_generation_prompt=False) == "[user] the cat\n\nthe dog sat\n"
    # An error that is not about the system role still surfaces.
    tok.chat_template = "{{ raise_exception('broken template') }}"
    from jinja2.exceptions import TemplateError
    with pytest.raises(TemplateError, match="broken template"):
        render_chat(tok, msgs)


def test_local_client_works_with_a_template_without_system_role(tiny, tmp_path):
    model, tok = tiny[0], gemma_tokenizer()
    lc = LocalClient(model, tok, max_new_tokens=3, cache_dir=tmp_path / "lc", model_id="tiny-gemma")
    msgs = [{"role": "system", "content": "a cat"}, {"role": "user", "content": "the dog sat"}]
    assert lc.prompt(msgs) == "<s><start_of_turn>user\na cat\n\nthe dog sat<end_of_turn>\n<start_of_turn>model\n"
    assert isinstance(lc.complete(msgs), str)
    assert set(lc.option_logprobs(msgs, ["yes", "no"])) == {"yes", "no"}
    related, raw = classify_related(lc, "cats", "task")  # the explainer's own system + user request
    assert raw.startswith("log p: ")


def test_generator_prompts_go_through_the_same_rendering():
    from lensflow.expertlens import generate as G

    tok = gemma_tokenizer()
    chat, templated = G._prompts(tok, ["cat"], "Say {concept}.")
    assert chat == ["<s><start_of_turn>user\nSay cat.<end_of_turn>\n<start_of_turn>model\n"] and templated
