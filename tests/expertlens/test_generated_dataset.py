"""The generated concept data set: written by an OpenAI-compatible endpoint (the library call and
the el_generated script, against the fake server of test_explain on 127.0.0.1, real HTTP) or by a
local model (the script's other backend, with canned completions)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from lensflow.core import io
from lensflow.expertlens import generate as G
from fake_llm_server import ENV, key, server  # noqa: F401 (pytest fixtures)
from tiny_models import save_tiny

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"


def answer(request):
    """Canned completions by concept and seed: cat always works (inflected on odd seeds), dog is
    cut off on even seeds, zebra is never used, and every answer but zebra's depends on the seed."""
    concept = re.search(r'"(\w+)"', request["messages"][-1]["content"]).group(1)
    k = request["seed"]
    if concept == "cat":
        return f"Here is a sentence:\n{'Two cats' if k % 2 else 'The cat'} slept on mat number {k}. More text."
    if concept == "dog":
        return f"The dog number {k} barked at" if k % 2 == 0 else f'"The dog number {k} barked loudly."'
    return "Nothing to see here, sorry."


def _client(server, tmp_path):  # noqa: F811
    return G.EndpointGenerator(server.url, "fake-instruct", cache_dir=tmp_path / "cache", api_key_env=ENV,
                               timeout=2, max_retries=1, backoff=0.01, temperature=0.7, top_p=0.9, max_tokens=28)


def test_endpoint_generation_filters_and_reruns_from_cache(server, key, tmp_path):  # noqa: F811
    server.expected_key, server.answer = key, answer
    stats = {}
    c = _client(server, tmp_path)
    got = G.generate_sentences_endpoint(c, ["cat", "dog", "zebra"], n_per_concept=3, seed=10, max_tries=2,
                                        stats=stats)
    assert got["cat"] == ["The cat slept on mat number 10.", "Two cats slept on mat number 11.",
                          "The cat slept on mat number 12."]
    assert got["dog"] == ["The dog number 11 barked loudly.", "The dog number 13 barked loudly.",
                          "The dog number 15 barked loudly."]
    assert got["zebra"] == []
    assert stats["inflected"] == 1 and stats["kept"] == 6
    assert stats["rejected"]["no_word"] == 6 and stats["rejected"]["incomplete"] == 3  # zebra: budget 2 x 3
    assert stats["by_concept"]["zebra"] == {"samples": 6, "kept": 0, "rejected": {"no_word": 6}}
    assert stats["by_concept"]["cat"] == {"samples": 3, "kept": 3, "rejected": {}}
    # one request per sample, each the documented chat request with its own seed
    n = len(server.requests)
    assert n == stats["samples"] == c.http_calls == c.misses
    prompt = G.DEFAULT_PROMPT.format(concept="dog")
    dog = [r for r in server.requests if r["messages"][0]["content"] == prompt]
    assert [r["seed"] for r in dog] == list(range(10, 16))
    assert dog[0] == {"model": "fake-instruct", "messages": [{"role": "user", "content": prompt}],
                      "temperature": 0.7, "top_p": 0.9, "max_tokens": 28, "seed": 10}
    assert set(server.auth) == {f"Bearer {key}"}
    # a rerun (fresh client, same cache) sends nothing and gets the same sentences
    again, stats2 = _client(server, tmp_path), {}
    assert G.generate_sentences_endpoint(again, ["cat", "dog", "zebra"], 3, seed=10, max_tries=2,
                                         stats=stats2) == got
    assert len(server.requests) == n and again.http_calls == 0 and again.hits == n
    cached = "".join(p.read_text() for p in (tmp_path / "cache").iterdir())
    assert key not in cached and len(list((tmp_path / "cache").iterdir())) == n
    # another seed is another set of requests
    G.generate_sentences_endpoint(_client(server, tmp_path), ["cat"], 3, seed=99, max_tries=2)
    assert len(server.requests) == n + 3


def _run_script(tmp_path, server=None, cache_dir=None, model=None, max_concepts=None):  # noqa: F811
    """el_generated.main on concepts cat, dog, zebra (kept) and yak (not kept); backend openai when
    a server is given, else local with the model folder `model`."""
    io.write_table(pd.DataFrame({"concept": ["cat", "dog", "zebra", "yak"], "kept": [True, True, True, False]}),
                   tmp_path / "concepts.parquet", {})
    pairs = [str(tmp_path / "pairs_a.parquet"), str(tmp_path / "pairs_b.parquet")]  # two human-judgment sets
    io.write_table(pd.DataFrame({"word_a": ["cat", "cat"], "word_b": ["dog", "yak"], "score": [7.0, 3.0]}), pairs[0], {})
    io.write_table(pd.DataFrame({"word_a": ["dog"], "word_b": ["cat"], "score": [6.0]}), pairs[1], {})
    spec = importlib.util.spec_from_file_location("el_generated", SCRIPTS / "el_generated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = SimpleNamespace(sentences=str(tmp_path / "sentences.parquet"),
                          membership=str(tmp_path / "membership.parquet"))
    dataset = dict(source="generated", n_positive=3, n_negative=4, prompt=G.DEFAULT_PROMPT, max_new_tokens=28,
                   temperature=1.0, top_p=0.95, batch_size=8, max_concepts=max_concepts)  # its expertlens.datasets entry
    common = dict(min_positive=3, seed=0)
    if server is not None:
        params = SimpleNamespace(dataset=dict(dataset, backend="openai"), generator=f"fake-instruct at {server.url}",
                                 cache_dir=str(cache_dir),
                                 endpoint={"base_url": server.url, "model": "fake-instruct", "api_key_env": ENV,
                                           "timeout": 2, "max_retries": 1}, **common)
        inputs = SimpleNamespace(model=[], concepts=str(tmp_path / "concepts.parquet"), pairs=pairs)
    else:
        params = SimpleNamespace(dataset=dict(dataset, backend="local"), generator="tiny", cache_dir="unused",
                                 endpoint={}, **common)
        inputs = SimpleNamespace(model=str(model), concepts=str(tmp_path / "concepts.parquet"), pairs=pairs)
    module.main(SimpleNamespace(input=inputs, output=out, params=params, log=[str(tmp_path / "log")], threads=1,
                                resources={}, wildcards=SimpleNamespace(dataset="generated")))
    return io.read_table(out.sentences), io.read_table(out.membership), io.read_metadata(out.sentences)


def _check_bank(sents, member):
    assert sorted(member.concept.unique()) == ["cat", "dog"]  # zebra dropped (0 < 3), yak not a concept
    text = dict(zip(sents.text_id, sents.text))
    pos = member[member.label == "positive"].assign(text=lambda d: d.text_id.map(text))
    assert len(pos) == 6 and pos[pos.concept == "cat"].text.str.contains(r"\bcats?\b").all()
    neg = member[(member.label == "negative") & (member.concept == "dog")].text_id.map(text)
    assert len(neg) == 3 and neg.str.contains("cat").all()  # dog's negatives: cat's positives


def test_el_generated_script_with_an_endpoint(server, key, tmp_path):  # noqa: F811
    server.answer = answer
    sents, member, meta = _run_script(tmp_path, server, tmp_path / "cache")
    _check_bank(sents, member)
    assert meta["backend"] == "openai" and meta["dropped"] == {"zebra": "only 0 generated sentences (< min_positive 3)"}
    assert meta["generator_source"] == {"backend": "openai", "base_url": server.url, "model": "fake-instruct"}
    n = len(server.requests)
    assert meta["generation"]["http_calls"] == n > 0
    assert key not in (tmp_path / "log").read_text()
    sents2, member2, meta2 = _run_script(tmp_path, server, tmp_path / "cache")  # the rerun: all from the cache
    assert len(server.requests) == n and meta2["generation"]["http_calls"] == 0
    pd.testing.assert_frame_equal(member, member2)
    pd.testing.assert_frame_equal(sents, sents2)


def test_el_generated_script_with_a_local_model(tmp_path, monkeypatch):
    calls = []

    def fake_complete(model, tok, prompts, *a, **k):  # the same canned answers, seeded by position
        calls.append(len(prompts))
        concepts = [re.search(r'"(\w+)"', p).group(1) for p in prompts]
        return [answer({"messages": [{"content": f'"{c}"'}], "seed": i}) for i, c in enumerate(concepts)], 0

    monkeypatch.setattr(G, "complete", fake_complete)
    sents, member, meta = _run_script(tmp_path, model=save_tiny(tmp_path / "tiny"))
    _check_bank(sents, member)
    assert meta["backend"] == "local" and meta["generator"] == "tiny" and calls
    assert meta["generation"]["device"] == "cpu" and "http_calls" not in meta["generation"]


def test_max_concepts_writes_sentences_for_the_concepts_that_keep_pairs(tmp_path, monkeypatch):
    # expertlens.datasets.<name>.max_concepts: 2 of the kept cat, dog, zebra; only cat-dog is a
    # scorable pair (in both sets), so zebra gets no prompt at all.
    asked = []

    def fake_complete(model, tok, prompts, *a, **k):
        concepts = [re.search(r'"(\w+)"', p).group(1) for p in prompts]
        asked.extend(concepts)
        return [answer({"messages": [{"content": f'"{c}"'}], "seed": i}) for i, c in enumerate(concepts)], 0

    monkeypatch.setattr(G, "complete", fake_complete)
    sents, member, meta = _run_script(tmp_path, model=save_tiny(tmp_path / "tiny"), max_concepts=2)
    assert set(asked) == {"cat", "dog"} and sorted(member.concept.unique()) == ["cat", "dog"]
    assert meta["max_concepts"] == 2 and meta["dropped"] == {}


def test_no_usable_sentence_stops_at_generation_with_reasons(tmp_path, monkeypatch):
    """A weak generator (issue 12, item 8): cat's samples never use the word, dog's are too short,
    zebra's repeat one sentence. The step fails naming the data set and why each concept got
    nothing usable, and writes no bank (caching would otherwise die on an empty table)."""

    def weak(model, tok, prompts, *a, **k):
        said = {"cat": "Nothing to see here, sorry.", "dog": "A dog.", "zebra": "The zebra ran across the plain."}
        return [said[re.search(r'"(\w+)"', p).group(1)] for p in prompts], 0

    monkeypatch.setattr(G, "complete", weak)
    with pytest.raises(ValueError) as err:
        _run_script(tmp_path, model=save_tiny(tmp_path / "tiny"))
    msg = str(err.value)
    assert "'generated'" in msg and "min_positive=3" in msg, msg
    lines = {ln.strip().split(":")[0]: ln for ln in msg.splitlines()[1:]}
    assert "0 usable of 12" in lines["cat"] and "no_word" in lines["cat"], msg
    assert "length" in lines["dog"], msg
    assert "1 usable of 12" in lines["zebra"] and "11 repeated" in lines["zebra"], msg
    assert "yak" not in lines  # not a kept concept: never asked for
    assert not (tmp_path / "sentences.parquet").exists() and not (tmp_path / "membership.parquet").exists()


def test_one_usable_concept_is_not_a_bank(tmp_path, monkeypatch):
    """ExpertLens compares concepts pairwise: a bank of one concept has no pair to compare, and the
    steps after it (similarity, domains, alignment) would fail far from the cause (the paper-scale
    rehearsal's random-weight generator found this). Only cat gets usable sentences here."""

    def one(model, tok, prompts, *a, **k):
        words = [re.search(r'"(\w+)"', p).group(1) for p in prompts]
        return [f"The {w} sat by the door number {i}." if w == "cat" else "Nothing here, sorry." for i, w in
                enumerate(words)], 0

    monkeypatch.setattr(G, "complete", one)
    with pytest.raises(ValueError) as err:
        _run_script(tmp_path, model=save_tiny(tmp_path / "tiny"))
    msg = str(err.value)
    assert "'generated'" in msg and "only 1 concept" in msg and "at least 2" in msg, msg
    assert "cat:" in msg and "dog:" in msg, msg
    assert not (tmp_path / "sentences.parquet").exists() and not (tmp_path / "membership.parquet").exists()
