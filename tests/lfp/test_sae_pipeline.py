"""The LFP SAE pipeline on a real per-token cache of a tiny model: text split, streamed token
batches, multi-layer SAE files, one variant's training, task texts, MLP module names and the
ablation prompts. Every expectation is recomputed independently (pyarrow, numpy, torch)."""

import collections
import logging
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lensflow.core.cache import CacheSpec, cache_activations
from lensflow.core.hooks import NoModuleMatched
from lensflow.core.io import TableError
from lensflow.lfp.finetune.layers import mlp_modules
from lensflow.lfp.sae.data import TokenBatches, cache_text_ids, split_texts
from lensflow.lfp.sae.model import SparseAutoencoder, load_saes, save_saes
from lensflow.lfp.sae.task_texts import exchange, task_texts
from lensflow.lfp.sae.train import Variant, train_variant
from lensflow.lfp.validation.ablation import ablation_prompts
from tiny_models import WORDS, tiny_model, tiny_tokenizer

MODULES = ["model.layers.0.mlp", "model.layers.1.mlp"]
D = 16  # hidden size of the tiny models


# --- a real per-token cache of the tiny llama ---------------------------------------------------

def random_texts(n, seed=0, lo=4, hi=14):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi)))) for _ in range(n)]


@pytest.fixture(scope="module")
def token_cache(tmp_path_factory):
    """(path, pandas table of the cache) with 14 texts (ids 100..113) in several row groups."""
    texts = pd.DataFrame({"text_id": np.arange(100, 114), "text": random_texts(14)})
    path = tmp_path_factory.mktemp("cache") / "tokens.parquet"
    cache_activations(tiny_model("llama"), tiny_tokenizer(), texts, CacheSpec(modules=MODULES, pooling="none"),
                      path, batch_size=4, rows_per_group=20)
    assert pq.ParquetFile(path).metadata.num_row_groups > 1
    return path, pq.read_table(path).to_pandas()


def kept_rows(table, module, ids):
    """The module's rows of texts `ids`, in file order: [n, d] float32 (read independently)."""
    sel = table[table["text_id"].isin(list(ids))]
    return np.stack(sel[module].to_numpy()).astype(np.float32) if len(sel) else np.empty((0, D), np.float32)


def row_counter(rows):
    return collections.Counter(r.tobytes() for r in np.asarray(rows, np.float32))


# --- split_texts / cache_text_ids ---------------------------------------------------------------

@pytest.mark.parametrize("n,fraction", [(2, 0.5), (2, 0.0), (5, 1.0), (10, 0.2), (37, 0.3)])
def test_split_texts_is_a_partition_with_at_least_one_held_out(n, fraction):
    ids = np.arange(1000, 1000 + n)[::-1]
    train, held = split_texts(np.concatenate([ids, ids[:3]]), fraction, seed=3)  # duplicates are one text
    assert set(train).isdisjoint(held)
    assert sorted([*train, *held]) == sorted(ids.tolist())
    assert 1 <= len(held) <= n - 1
    assert len(held) == min(n - 1, max(1, round(fraction * n)))
    assert list(train) == sorted(train) and list(held) == sorted(held)


def test_split_texts_depends_only_on_the_seed():
    ids = np.arange(50)
    a, b = split_texts(ids, 0.3, seed=7), split_texts(ids, 0.3, seed=7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    others = {tuple(split_texts(ids, 0.3, seed=s)[1]) for s in range(5)}
    assert len(others) > 1, "the held-out set does not change with the seed"


def test_split_texts_holds_out_texts_until_enough_tokens_but_at_most_half():
    ids = np.arange(100, 140)  # 40 texts of 10..49 tokens
    tokens = np.arange(10, 50)
    train0, held0 = split_texts(ids, 0.1, seed=2)
    train, held = split_texts(ids, 0.1, seed=2, n_tokens=tokens, min_heldout_tokens=300)
    assert set(held0) <= set(held)  # the same seeded order, extended
    n_tok = dict(zip(ids, tokens))
    held_tokens = sum(n_tok[i] for i in held)
    assert held_tokens >= 300 and held_tokens - min(n_tok[i] for i in held) < 300 + 49  # no more than needed
    assert set(train).isdisjoint(held) and len(train) + len(held) == 40
    # a minimum the texts cannot reach: half of them, not all
    _, held_all = split_texts(ids, 0.1, seed=2, n_tokens=tokens, min_heldout_tokens=10**6)
    assert len(held_all) == 20
    # without the minimum: unchanged
    assert np.array_equal(split_texts(ids, 0.1, seed=2, n_tokens=tokens)[1], held0)


def test_split_texts_needs_two_texts():
    with pytest.raises(ValueError, match="at least 2"):
        split_texts([4, 4, 4], 0.5)


def test_cache_text_ids_are_the_distinct_ids(token_cache, tmp_path):
    path, table = token_cache
    assert cache_text_ids(path).tolist() == sorted(table["text_id"].unique().tolist()) == list(range(100, 114))
    bad = tmp_path / "no_ids.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(bad)
    with pytest.raises(TableError, match="no_ids.parquet"):
        cache_text_ids(bad)


# --- TokenBatches ---------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size,read_rows", [(8, 7), (5, 64), (64, 3)])
def test_unshuffled_batches_are_the_kept_rows_in_file_order(token_cache, batch_size, read_rows):
    path, table = token_cache
    keep = [113, 101, 104, 105, 110]
    tb = TokenBatches(path, MODULES[1], keep, batch_size=batch_size, shuffle=False, read_rows=read_rows)
    batches = list(tb)
    expect = kept_rows(table, MODULES[1], keep)
    assert tb.d == D and all(b.dtype == np.float32 and b.shape[1] == D for b in batches)
    assert all(len(b) == batch_size for b in batches[:-1]) and 0 < len(batches[-1]) <= batch_size
    np.testing.assert_array_equal(np.concatenate(batches), expect)
    np.testing.assert_array_equal(np.concatenate(list(tb)), expect)  # re-iterable


def test_unshuffled_without_text_ids_is_the_whole_column(token_cache):
    path, table = token_cache
    got = np.concatenate(list(TokenBatches(path, MODULES[0], None, batch_size=9, shuffle=False, read_rows=11)))
    np.testing.assert_array_equal(got, np.stack(table[MODULES[0]].to_numpy()).astype(np.float32))


def test_shuffled_epoch_yields_each_kept_row_at_most_once_in_full_batches(token_cache):
    path, table = token_cache
    keep = list(range(100, 110))
    expect = kept_rows(table, MODULES[0], keep)
    batch = 7
    tb = TokenBatches(path, MODULES[0], keep, batch_size=batch, shuffle=True, shuffle_buffer=10_000, seed=5,
                      read_rows=13)
    epochs = [list(tb) for _ in range(2)]
    for ep in epochs:
        assert all(b.shape == (batch, D) for b in ep)
        got = np.concatenate(ep)
        assert len(got) == len(expect) // batch * batch
        assert not (row_counter(got) - row_counter(expect)), "a row was yielded that is not a kept row (or twice)"
    first, second = (np.concatenate(ep) for ep in epochs)
    assert not np.array_equal(first, second), "the second epoch repeated the first one's order"
    # a fresh object with the same seed replays the first epoch; another seed does not
    again = TokenBatches(path, MODULES[0], keep, batch_size=batch, shuffle=True, shuffle_buffer=10_000, seed=5,
                         read_rows=13)
    np.testing.assert_array_equal(np.concatenate(list(again)), first)
    other = TokenBatches(path, MODULES[0], keep, batch_size=batch, shuffle=True, shuffle_buffer=10_000, seed=6,
                         read_rows=13)
    assert not np.array_equal(np.concatenate(list(other)), first)


def test_shuffled_is_actually_shuffled(token_cache):
    path, table = token_cache
    expect = kept_rows(table, MODULES[0], range(100, 114))
    got = np.concatenate(list(TokenBatches(path, MODULES[0], None, batch_size=4, shuffle=True, seed=0)))
    assert not np.array_equal(got, expect[: len(got)])


@pytest.mark.parametrize("buffer,read_rows", [(1, 5), (8, 3), (20, 17)])
def test_small_shuffle_buffer_bounds_memory_and_still_covers_the_epoch(token_cache, buffer, read_rows):
    path, table = token_cache
    keep = [100, 102, 103, 106, 107, 109, 111, 112]
    expect = kept_rows(table, MODULES[1], keep)
    batch = 6
    tb = TokenBatches(path, MODULES[1], keep, batch_size=batch, shuffle=True, shuffle_buffer=buffer, seed=1,
                      read_rows=read_rows)
    sizes = []
    real_drain = tb._drain

    def spy(rows, rng):
        sizes.append(len(rows))
        return (yield from real_drain(rows, rng))

    tb._drain = spy
    got = np.concatenate(list(tb))
    # remainders are carried between buffers, so only the epoch's last (< batch) rows are dropped
    assert len(got) == len(expect) // batch * batch
    assert not (row_counter(got) - row_counter(expect))
    assert len(sizes) > 2, "the small buffer was not drained several times"
    # what is held at once: under one buffer, plus one read chunk, plus a carried short remainder
    assert max(sizes) < max(buffer, batch) + read_rows + batch


def test_rows_outside_text_ids_never_appear(token_cache):
    path, table = token_cache
    keep, drop = [103, 108], [t for t in range(100, 114) if t not in (103, 108)]
    kept, dropped = row_counter(kept_rows(table, MODULES[0], keep)), row_counter(kept_rows(table, MODULES[0], drop))
    only_dropped = set(dropped) - set(kept)
    assert only_dropped
    for shuffle in (False, True):
        got = row_counter(np.concatenate(list(TokenBatches(path, MODULES[0], keep, batch_size=2, shuffle=shuffle,
                                                           read_rows=4))))
        assert not set(got) & only_dropped
    assert list(TokenBatches(path, MODULES[0], [999], batch_size=2, shuffle=False)) == []


def test_unknown_module_or_unreadable_file_raise_table_error_naming_the_file(token_cache, tmp_path):
    path, _ = token_cache
    with pytest.raises(TableError, match=str(path.name)):
        TokenBatches(path, "model.layers.7.mlp", None)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(TableError, match="junk.parquet"):
        TokenBatches(junk, MODULES[0], None)


# --- save_saes / load_saes ----------------------------------------------------------------------

def perturbed(sae, seed):
    """Non-zero biases (zero-initialised ones would round-trip trivially)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return sae


def test_save_load_saes_round_trip(tmp_path):
    saes = {3: perturbed(SparseAutoencoder(8, 8, tied=True, alpha=2e-3, seed=0), 1),
            11: perturbed(SparseAutoencoder(8, 24, tied=False, alpha=5e-4, seed=1), 2),
            1: perturbed(SparseAutoencoder(5, 10, tied=True, seed=2), 3)}
    meta = {"variant": "2n", "lr": 1e-3, "layers": [3, 11, 1], "path": tmp_path}
    path = tmp_path / "saes.safetensors"
    save_saes(saes, path, meta)
    loaded, got_meta = load_saes(path)
    assert sorted(loaded) == [1, 3, 11]
    assert got_meta == {"variant": "2n", "lr": 1e-3, "layers": [3, 11, 1], "path": str(tmp_path)}
    x = torch.randn(6, 8)
    for layer, sae in saes.items():
        back = loaded[layer]
        assert back.config() == sae.config() and not back.training
        ref = sae.state_dict()
        assert set(back.state_dict()) == set(ref)
        for k, v in back.state_dict().items():
            assert torch.equal(v, ref[k]), (layer, k)
        assert torch.equal(back.W_D, sae.W_D)
        xb = x[:, : sae.d_in]
        assert torch.equal(back(xb)[0], sae(xb)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saes.safetensors"], "temp file left behind"


def test_tied_stays_tied_after_loading_and_untied_does_not(tmp_path):
    path = tmp_path / "s.safetensors"
    save_saes({0: SparseAutoencoder(6, 12, tied=True, seed=0), 1: SparseAutoencoder(6, 12, tied=False, seed=0)}, path)
    loaded, meta = load_saes(path)
    assert meta == {}
    tied, untied = loaded[0], loaded[1]
    assert tied.W_D.data_ptr() == tied.W_E.data_ptr()
    with torch.no_grad():
        tied.W_E[2, 3] = 123.0
        untied.W_E[2, 3] = 123.0
    assert tied.W_D[3, 2].item() == 123.0
    assert untied.W_D[3, 2].item() != 123.0
    assert len(list(tied.parameters())) == 3 and len(list(untied.parameters())) == 4


def test_truncated_file_raises_value_error_naming_the_path(tmp_path):
    path = tmp_path / "cut.safetensors"
    save_saes({0: SparseAutoencoder(8, 16, seed=0)}, path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 20, 3):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="cut.safetensors"):
            load_saes(path)


def test_load_saes_rejects_a_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="other.safetensors"):
        load_saes(path)


def test_failed_save_leaves_no_file(tmp_path):
    path = tmp_path / "bad.safetensors"

    class Broken(SparseAutoencoder):
        def config(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_saes({0: Broken(4, 4, seed=0)}, path)
    assert list(tmp_path.iterdir()) == []


# --- train_variant ------------------------------------------------------------------------------

TRAIN = dict(lr=1e-3, batch_size=8, shuffle_buffer=64, seed=3)


def split_of(path):
    return split_texts(cache_text_ids(path), 0.25, seed=0)


def test_train_variant_returns_one_measured_sae_per_layer(token_cache):
    path, table = token_cache
    train, held = split_of(path)
    modules = {0: MODULES[0], 1: MODULES[1]}
    n_examples = 60
    saes, metrics, history = train_variant(path, modules, Variant(width=2, alpha=1e-3), train, held,
                                           n_examples=n_examples, **TRAIN)
    n_steps = math.ceil(n_examples / TRAIN["batch_size"])
    assert sorted(saes) == [0, 1]
    assert {"heldout_fvu", "heldout_l0", "heldout_dead_fraction", "heldout_mse", "n_steps", "layer",
            "d_hidden"} <= set(metrics.columns)
    assert metrics["layer"].tolist() == [0, 1] and metrics["module"].tolist() == MODULES
    assert (metrics["n_steps"] == n_steps).all() and (metrics["n_examples"] == n_steps * 8).all()
    for layer, sae in saes.items():
        assert (sae.d_in, sae.d_hidden, sae.tied) == (D, 2 * D, True)
        row = metrics.set_index("layer").loc[layer]
        assert row["d_hidden"] == 2 * D
        # held-out metrics recomputed from the raw held-out rows with numpy
        x = kept_rows(table, modules[layer], held).astype(np.float64)
        with torch.no_grad():
            x_hat, codes = (t.double().numpy() for t in sae(torch.as_tensor(x, dtype=torch.float32)))
        sst = ((x - x.mean(0)) ** 2).sum()
        assert row["heldout_n"] == len(x)
        assert row["heldout_fvu"] == pytest.approx(((x_hat - x) ** 2).sum() / sst, rel=1e-4)
        assert row["heldout_l0"] == pytest.approx((codes > 0).sum(1).mean(), rel=1e-6)
        assert row["heldout_dead_fraction"] == pytest.approx((~(codes > 0).any(0)).mean())
        h = history[history["layer"] == layer]
        assert len(h) >= 1 and h["step"].iloc[-1] == n_steps and h["examples"].iloc[-1] == n_steps * 8
        assert h["step"].is_monotonic_increasing
    assert set(history["layer"]) == {0, 1}


def test_train_variant_is_deterministic(token_cache):
    path, _ = token_cache
    train, held = split_of(path)
    runs = [train_variant(path, {1: MODULES[1]}, Variant(width=1), train, held, n_examples=40, **TRAIN)
            for _ in range(2)]
    (s1, m1, h1), (s2, m2, h2) = runs
    assert torch.equal(s1[1].W_E, s2[1].W_E) and torch.equal(s1[1].b_D, s2[1].b_D)
    cols = ["heldout_fvu", "heldout_l0", "heldout_mse"]
    pd.testing.assert_frame_equal(m1[cols], m2[cols])
    pd.testing.assert_frame_equal(h1, h2)
    s3, _, _ = train_variant(path, {1: MODULES[1]}, Variant(width=1), train, held, n_examples=40,
                             **{**TRAIN, "seed": 4})
    assert not torch.equal(s1[1].W_E, s3[1].W_E)


def matched_row_cosines(small, big):
    a, b = small.W_E.detach(), big.W_E.detach()[: small.d_hidden]
    return torch.nn.functional.cosine_similarity(a, b, dim=1)


def test_ae_n_and_ae_2n_start_from_independent_dictionaries(token_cache):
    path, _ = token_cache
    train, held = split_of(path)
    # the premise: a shared seed WOULD make the first n rows of the 2n init parallel to the n init
    assert matched_row_cosines(SparseAutoencoder(D, D, seed=9), SparseAutoencoder(D, 2 * D, seed=9)).min() > 0.999
    one_step = {**TRAIN, "batch_size": 8}
    small, _, _ = train_variant(path, {0: MODULES[0], 1: MODULES[1]}, Variant(width=1), train, held,
                                n_examples=8, **one_step)
    big, m, _ = train_variant(path, {0: MODULES[0], 1: MODULES[1]}, Variant(width=2), train, held,
                              n_examples=8, **one_step)
    assert (m["n_steps"] == 1).all()
    for layer in (0, 1):
        cos = matched_row_cosines(small[layer], big[layer])
        assert cos.abs().max() < 0.99, f"layer {layer}: AE_2n rows parallel to AE_n rows ({cos.max():.3f})"


# --- task_texts ---------------------------------------------------------------------------------

def test_rl_task_texts_sample_of_the_corpus():
    corpus = pd.DataFrame({"text": [f"review number {i}" for i in range(20)] + ["   ", ""]})
    out = task_texts("rl", corpus, n_texts=7, seed=1)
    assert list(out.columns) == ["text_id", "text"]
    assert out["text_id"].tolist() == list(range(7))
    pos = [int(t.split()[-1]) for t in out["text"]]
    assert len(set(pos)) == 7 and pos == sorted(pos)  # distinct corpus rows, kept in corpus order
    assert all(t.strip() for t in out["text"])
    assert task_texts("rl", corpus, n_texts=7, seed=1).equals(out)
    assert task_texts("rl", corpus, n_texts=100, seed=1)["text"].tolist() == corpus["text"][:20].tolist()


def test_dpo_task_texts_are_two_exchanges_per_pair():
    prefs = pd.DataFrame({"prompt": [" How are you? ", "Name a cat."], "chosen": ["Fine, thanks.", "Tom "],
                          "rejected": ["Go away.", " No."]})
    out = task_texts("dpo", prefs, n_texts=10)
    assert out["text_id"].tolist() == [0, 1, 2, 3]
    assert out["text"].tolist() == [
        "User: How are you?\nAssistant: Fine, thanks.", "User: How are you?\nAssistant: Go away.",
        "User: Name a cat.\nAssistant: Tom", "User: Name a cat.\nAssistant: No."]
    assert exchange(" a ", " b ") == "User: a\nAssistant: b"
    capped = task_texts("dpo", prefs, n_texts=3, seed=0)
    assert len(capped) == 3 and set(capped["text"]) <= set(out["text"])


def test_task_texts_errors():
    with pytest.raises(ValueError, match="rejected"):
        task_texts("dpo", pd.DataFrame({"prompt": ["p"], "chosen": ["c"]}), 5)
    with pytest.raises(ValueError, match="text"):
        task_texts("rl", pd.DataFrame({"review": ["x"]}), 5)
    with pytest.raises(ValueError, match="empty"):
        task_texts("rl", pd.DataFrame({"text": ["  ", ""]}), 5)
    with pytest.raises(ValueError, match="empty"):
        task_texts("dpo", pd.DataFrame({"prompt": [], "chosen": [], "rejected": []}), 5)


# --- layers.mlp_modules -------------------------------------------------------------------------

@pytest.mark.parametrize("family,blocks", [("llama", lambda m: m.model.layers), ("neox", lambda m: m.gpt_neox.layers)])
def test_mlp_modules_names_the_block_mlps_in_the_given_order(family, blocks):
    model = tiny_model(family, n_layers=3)
    names = mlp_modules(model, [2, 0, 1])
    modules = dict(model.named_modules())
    assert [modules[n] for n in names] == [blocks(model)[i].mlp for i in (2, 0, 1)]
    assert all(n.endswith(f"layers.{i}.mlp") for n, i in zip(names, (2, 0, 1)))
    assert mlp_modules(model, []) == []
    with pytest.raises(NoModuleMatched, match=r"\[5\]"):
        mlp_modules(model, [0, 5])


# --- ablation_prompts ---------------------------------------------------------------------------

def test_vader_ablation_prompts_are_exact_token_prefixes(caplog):
    tok = tiny_tokenizer()
    texts = random_texts(30, seed=4, lo=2, hi=16)
    table = pd.DataFrame({"text": texts})
    k = 6
    prompts = ablation_prompts("vader", table, tok, n=8, prefix_tokens=k, seed=2)
    assert prompts == ablation_prompts("vader", table, tok, n=8, prefix_tokens=k, seed=2)
    assert len(prompts) == 8
    firsts = {tuple(tok(t, add_special_tokens=False)["input_ids"][:k]) for t in texts
              if len(tok(t, add_special_tokens=False)["input_ids"]) >= k}
    for p in prompts:
        ids = tuple(tok(p, add_special_tokens=False)["input_ids"])
        assert len(ids) == k and ids in firsts
    n_long = sum(len(t.split()) >= k for t in texts)
    with caplog.at_level(logging.WARNING, logger="lensflow"):
        everything = ablation_prompts("vader", table, tok, n=100, prefix_tokens=k, seed=2)
    assert len(everything) == n_long and "only" in caplog.text


@pytest.mark.parametrize("kind", ["hh", "toxic"])
def test_hh_ablation_prompts_open_an_exchange(kind):
    prompts = ["Tell me a joke.", "  What is tea? ", "Tell me a joke.", "Why is the sky blue?", "Help me.",
               "Tell me a joke."]
    table = pd.DataFrame({"prompt": prompts, "chosen": "c", "rejected": "r"})
    out = ablation_prompts(kind, table, tiny_tokenizer(), n=3, seed=0)
    assert out == ablation_prompts(kind, table, tiny_tokenizer(), n=3, seed=0)
    assert len(out) == 3 == len(set(out))
    expected = {f"User: {p.strip()}\nAssistant:" for p in prompts}
    assert len(expected) == 4 and set(out) <= expected
    full = ablation_prompts(kind, table, tiny_tokenizer(), n=100, seed=0)
    assert sorted(full) == sorted(expected)  # the repeated prompt is asked once
    seeds = {tuple(ablation_prompts(kind, table, tiny_tokenizer(), n=4, seed=s)) for s in range(6)}
    assert len(seeds) > 1, "the order does not depend on the seed"


# --- float16 per-token caches (paper.yaml's lfp.dtype) -------------------------------------------

def as_float32_cache(src, dst):
    """The same cache with every module column cast float16 -> float32 (same rows, row groups, metadata)."""
    pf = pq.ParquetFile(src)
    schema = pf.schema_arrow
    cast = pa.schema([f.with_type(pa.list_(pa.float32(), f.type.list_size)) if f.name in MODULES else f
                      for f in schema], metadata=schema.metadata)
    with pq.ParquetWriter(dst, cast) as w:
        for i in range(pf.num_row_groups):
            w.write_table(pf.read_row_group(i).cast(cast))
    return dst


@pytest.fixture(scope="module")
def half_caches(tmp_path_factory):
    """(float16 cache, the same values as a float32 cache) of the token_cache texts."""
    folder = tmp_path_factory.mktemp("half")
    texts = pd.DataFrame({"text_id": np.arange(100, 114), "text": random_texts(14)})
    half = folder / "half.parquet"
    cache_activations(tiny_model("llama"), tiny_tokenizer(), texts,
                      CacheSpec(modules=MODULES, pooling="none", dtype="float16"), half, batch_size=4,
                      rows_per_group=20)
    assert pq.ParquetFile(half).schema_arrow.field(MODULES[0]).type.value_type == "halffloat"
    return half, as_float32_cache(half, folder / "full.parquet")


def test_float16_cache_streams_float32_batches_of_its_values(half_caches, token_cache):
    half, full = half_caches
    ids = np.arange(100, 110)
    a = np.concatenate(list(TokenBatches(half, MODULES[1], ids, batch_size=5, shuffle=False)))
    b = np.concatenate(list(TokenBatches(full, MODULES[1], ids, batch_size=5, shuffle=False)))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    # the float32 cache of the same texts, rounded to float16, is what the float16 cache holds
    x32 = kept_rows(token_cache[1], MODULES[1], ids)
    np.testing.assert_array_equal(a, x32.astype(np.float16).astype(np.float32))


def test_sae_trained_on_a_float16_cache_equals_one_trained_on_its_float32_values(half_caches):
    half, full = half_caches
    train, held = split_of(half)
    runs = [train_variant(path, {0: MODULES[0], 1: MODULES[1]}, Variant(width=2), train, held, n_examples=40, **TRAIN)
            for path in (half, full)]
    (s16, m16, h16), (s32, m32, h32) = runs
    for layer in (0, 1):
        assert s16[layer].W_E.dtype == torch.float32 and torch.equal(s16[layer].W_E, s32[layer].W_E)
    pd.testing.assert_frame_equal(m16, m32)
    pd.testing.assert_frame_equal(h16, h32)
    assert np.isfinite(m16["heldout_fvu"]).all()


def test_records_of_a_float16_cache_equal_those_of_its_float32_values(half_caches):
    from lensflow.lfp.validation.records import top_records

    half, full = half_caches
    sae = SparseAutoencoder(D, 2 * D, seed=1)
    a = top_records(half, MODULES[0], sae, list(range(2 * D)), k=3, batch_rows=17)
    b = top_records(full, MODULES[0], sae, list(range(2 * D)), k=3, batch_rows=17)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    assert len(a[0]) > 0


# --- enough distinct tokens for n_examples (lfp.n_texts) -----------------------------------------

def test_cache_token_counts_are_rows_per_text(token_cache):
    from lensflow.lfp.sae.data import cache_token_counts

    path, table = token_cache
    ids, counts = cache_token_counts(path)
    expected = table.groupby("text_id").size()
    assert ids.tolist() == expected.index.tolist() and counts.tolist() == expected.tolist()


def test_too_few_training_tokens_stop_naming_the_keys_unless_repeats_are_allowed():
    from lensflow.lfp.sae.data import check_training_tokens

    # 100 tokens in whole batches of 32 are 96: 3 steps; 75 examples need 3 steps (96 tokens)
    assert check_training_tokens(100, 9, 75, 32, False, "cache.parquet") == pytest.approx(1.0)
    assert check_training_tokens(100, 9, 64, 32, False, "cache.parquet") == pytest.approx(64 / 96)
    with pytest.raises(ValueError) as err:
        check_training_tokens(100, 9, 97, 32, False, "cache.parquet")  # 4 steps = 128 tokens
    msg = str(err.value)
    for key in ("lfp.n_texts", "lfp.max_length", "lfp.heldout_fraction", "lfp.sae.n_examples=97",
                "lfp.sae.batch_size=32", "lfp.sae.repeat_tokens", "cache.parquet holds 100 tokens of its 9 training"):
        assert key in msg, msg
    assert check_training_tokens(100, 9, 97, 32, True, "cache.parquet") == pytest.approx(128 / 96)


def test_train_variant_measures_the_linear_code_on_the_same_split(token_cache):
    """linear_l0_fraction: per layer, the top-k principal subspace of the layer's training rows,
    scored on its held-out rows, as numpy computes it directly (the sparse-code check's reference)."""
    path, table = token_cache
    train, held = split_of(path)
    _, metrics, _ = train_variant(path, {1: MODULES[1]}, Variant(width=2), train, held, n_examples=16,
                                  linear_l0_fraction=0.25, **TRAIN)
    row = metrics.iloc[0]
    k = int(0.25 * 2 * D)
    assert row["linear_k"] == k
    x_tr = kept_rows(table, MODULES[1], train).astype(np.float64)
    x_he = kept_rows(table, MODULES[1], held).astype(np.float64)
    mu = x_tr.mean(0)
    _, _, vt = np.linalg.svd(x_tr - mu, full_matrices=False)
    x_hat = mu + (x_he - mu) @ vt[:k].T @ vt[:k]
    sse_d, sst_d = ((x_he - x_hat) ** 2).sum(0), ((x_he - x_he.mean(0)) ** 2).sum(0)
    assert row["linear_fvu"] == pytest.approx(sse_d.sum() / sst_d.sum(), rel=1e-3)
    assert row["linear_fvu_per_dim"] == pytest.approx((sse_d / sst_d).mean(), rel=1e-3)
    _, plain, _ = train_variant(path, {1: MODULES[1]}, Variant(width=2), train, held, n_examples=16, **TRAIN)
    assert "linear_fvu" not in plain.columns  # only when asked
