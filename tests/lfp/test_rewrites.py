"""hh / toxic triples written by an instruct LLM (lensflow.lfp.probes.rewrites and the lfp_triples script),
with a scripted client and, for the script, against the fake OpenAI-compatible server of
test_explain (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from lensflow.core import io
from lensflow.lfp.probes.rewrites import STYLES, clean_rewrite, llm_rewrite_triples, rewrite_messages
from fake_llm_server import ENV, key, server  # noqa: F401 (pytest fixtures)

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"


def styled(messages):
    """A rewrite that names its style and echoes the prompt, so tests can check who got what."""
    user = messages[-1]["content"]
    style = next(k for k, v in STYLES.items() if v in user)
    prompt = re.search(r"User: (.*)\n", user).group(1)
    return f"Here is the rewritten reply: \"[{style}] about {prompt}\""


class Scripted:
    def __init__(self, answer=styled):
        self.answer, self.calls = answer, 0

    def complete(self, messages):
        self.calls += 1
        return self.answer(messages)


ENTRIES = [(f"question {i}?", f"answer {i}.") for i in range(6)]


def test_hh_triples_keep_the_prompt_and_vary_only_the_answer():
    df, dropped = llm_rewrite_triples(ENTRIES, "hh", 4, Scripted(), seed=1)
    assert dropped == 0 and df["triple_id"].nunique() == 4 and len(df) == 12
    assert not df["synthetic"].any() and df["word"].isna().all() and (df["span_start"] == -1).all()
    for _, g in df.groupby("triple_id"):
        prompt = ENTRIES[g["source_text_id"].iloc[0]][0]
        by = dict(zip(g["polarity"], g["text"]))
        assert all(t.startswith(f"User: {prompt}\nAssistant: [") for t in by.values())
        assert "[positive]" in by["positive"] and "[negative]" in by["negative"] and "[neutral]" in by["neutral"]


def test_toxic_swaps_positive_and_negative():
    df, _ = llm_rewrite_triples(ENTRIES, "toxic", 2, Scripted(), seed=1)
    by = df.groupby("polarity")["text"].apply(" ".join)
    assert "[negative]" in by["positive"] and "[positive]" in by["negative"]  # harmful is rewarded


def test_empty_or_duplicated_rewrites_drop_the_triple_and_are_counted():
    def lazy(messages):
        user = messages[-1]["content"]
        if "question 0?" in user:
            return "   "
        if "question 1?" in user:
            return "the same reply"
        return styled(messages)

    df, dropped = llm_rewrite_triples(ENTRIES[:3], "hh", 10, Scripted(lazy), seed=0)
    assert dropped == 2 and df["triple_id"].tolist() == [0, 0, 0] and set(df["source_text_id"]) == {2}


def test_n_triples_caps_the_requests_and_bad_kind_is_refused():
    c = Scripted()
    df, _ = llm_rewrite_triples(ENTRIES, "hh", 2, c, seed=0)
    assert df["triple_id"].nunique() == 2 and c.calls == 6
    with pytest.raises(ValueError, match="unknown rewrite task"):
        llm_rewrite_triples(ENTRIES, "vader", 2, c)


def test_clean_rewrite_and_messages():
    assert clean_rewrite('Rewritten reply: "Sure,  glad to\\nhelp."') == "Sure, glad to\\nhelp."
    assert clean_rewrite("Here's the rewrite: Assistant: No.") == "No."
    m = rewrite_messages("p?", "a.", "neutral")
    assert m[0]["role"] == "system" and "User: p?\nAssistant: a." in m[1]["content"]


def _run_triples(tmp_path, server, kind="toxic"):
    pairs = pd.DataFrame({"prompt": [e[0] for e in ENTRIES], "chosen": [e[1] for e in ENTRIES],
                          "rejected": ["no."] * len(ENTRIES)})
    io.write_table(pairs, tmp_path / "pairs.parquet", {})
    spec = importlib.util.spec_from_file_location("lfp_triples", SCRIPTS / "lfp_triples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rewriter = {"backend": "openai", "model": "fake-llama", "base_url": server.url, "api_key_env": ENV,
                "timeout": 2, "max_retries": 1, "max_new_tokens": 64}
    out = tmp_path / "triples.parquet"
    module.main(SimpleNamespace(
        input=SimpleNamespace(table=str(tmp_path / "pairs.parquet"), lexicon=str(tmp_path / "unused"), rewriter=[]),
        output=[str(out)], log=[str(tmp_path / "triples.log")], threads=1, resources={},
        params=SimpleNamespace(task=kind, kind=kind, n_triples=4, min_abs_value=1.0, rewriter=rewriter,
                               cache_dir=str(tmp_path / "cache"), seed=0)))
    return out


def test_triples_script_with_an_endpoint_caches_and_never_writes_the_key(server, key, tmp_path):  # noqa: F811
    server.expected_key = key
    server.answer = lambda request: styled(request["messages"])
    out = _run_triples(tmp_path, server)
    df, meta = io.read_table(out), io.read_metadata(out)
    assert df["triple_id"].nunique() == 4 and len(server.requests) == 12
    assert meta["rewriter"] == {"backend": "openai", "model": "fake-llama", "base_url": server.url}
    assert meta["synthetic"] is False and meta["n_dropped"] == 0
    out.unlink()
    _run_triples(tmp_path, server)  # a rerun is answered from the disk cache
    assert len(server.requests) == 12 and io.read_table(out).equals(df)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(key.encode() not in p.read_bytes() for p in written)


def test_a_local_rewriter_without_system_role_folds_the_instructions_into_the_user_turn(tmp_path):
    """Gemma-style instruct models (no system role, strictly alternating turns) as the local rewriter."""
    from lensflow.lfp.probes.rewrites import SYSTEM
    from lensflow.lfp.validation.explanations import LocalClient
    from test_explain import gemma_tokenizer
    from tiny_models import tiny_model

    lc = LocalClient(tiny_model("llama"), gemma_tokenizer(), max_new_tokens=4, cache_dir=tmp_path / "c",
                     model_id="tiny-gemma")
    messages = rewrite_messages("question 0?", "answer 0.", "neutral")
    assert lc.prompt(messages).startswith(f"<s><start_of_turn>user\n{SYSTEM}\n\nUser: question 0?\n")
    df, dropped = llm_rewrite_triples(ENTRIES[:2], "hh", 2, lc, seed=0)
    assert lc.misses == 6 and df["triple_id"].nunique() + dropped == 2  # every request answered


def test_hh_transcripts_are_written_once_in_requests_and_rows():
    hh = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: question 9?\n\nAssistant:"
    seen = []

    def record(messages):
        seen.append(messages[-1]["content"])
        return styled(messages)

    df, dropped = llm_rewrite_triples([(hh, "answer 9.")], "hh", 1, Scripted(record), seed=0)
    assert dropped == 0 and len(df) == 3 and len(seen) == 3
    transcript = "User: hi there\nAssistant: hello\nUser: question 9?\nAssistant: "
    assert all(t.startswith(transcript + "[") for t in df["text"])
    assert all(s.startswith(transcript + "answer 9.\n\n") for s in seen)
    assert not any("Human:" in t for t in [*df["text"], *seen])
