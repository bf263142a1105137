"""Top activation records against a brute-force read of a real per-token cache, and their formatting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from lensflow.core.cache import CacheSpec, cache_activations
from lensflow.core.io import TableError
from lensflow.lfp.sae.model import SparseAutoencoder
from lensflow.lfp.validation.records import format_records, scale_activation, token_table, top_records
from tiny_models import WORDS, tiny_model, tiny_tokenizer

MODULE = "model.layers.0.mlp"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    texts = pd.DataFrame({
        "text_id": np.arange(100, 124),
        "text": [" ".join(rng.choice(WORDS, size=rng.integers(3, 20))) for _ in range(24)],
    })
    path = tmp_path_factory.mktemp("rec") / "tokens.parquet"
    # small row groups so the streaming reader sees several batches
    cache_activations(tiny_model("llama"), tiny_tokenizer(), texts, CacheSpec([MODULE], pooling="none"), path,
                      batch_size=5, rows_per_group=37)
    return path


@pytest.fixture(scope="module")
def sae(cache):
    s = SparseAutoencoder(d_in=16, d_hidden=24, seed=3)
    x = torch.tensor(np.stack(pq.read_table(cache)[MODULE].to_numpy(zero_copy_only=False)))  # [n_tok, 16]
    with torch.no_grad():
        pre = torch.sort(x @ s.W_E[7] + s.b_E[7], descending=True).values  # [n_tok]
        s.b_E[5] = -1e4  # a dead feature: never active
        s.b_E[7] -= (pre[2] + pre[3]) / 2  # a rare one: active on exactly 3 tokens, fewer than k
    return s


def brute_force(path, sae, features, k):
    """Read everything, encode everything, sort every feature: the obvious, unbounded way."""
    t = pq.read_table(path).to_pandas()
    x = torch.tensor(np.stack(t[MODULE].to_numpy()), dtype=torch.float32)  # [n_tok, 16]
    with torch.no_grad():
        codes = sae.encode(x).numpy()  # [n_tok, 24]
    rows, stats = [], []
    for f in features:
        df = pd.DataFrame({"text_id": t["text_id"], "position": t["position"], "activation": codes[:, f]})
        df = df[df["activation"] > 0].sort_values(["activation", "text_id", "position"],
                                                  ascending=[False, True, True]).head(k)
        rows.append(df.assign(feature=f, rank=np.arange(len(df))))
        stats.append({"feature": f, "max_activation": codes[:, f].max(), "frequency": (codes[:, f] > 0).mean(),
                      "n_tokens": len(codes)})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(stats)


@pytest.mark.parametrize("batch_rows", [13, 65536])
def test_top_records_equal_brute_force(cache, sae, batch_rows):
    features, k = [0, 5, 7, 11, 23], 6
    records, stats = top_records(cache, MODULE, sae, features, k=k, batch_rows=batch_rows)
    want, want_stats = brute_force(cache, sae, features, k)
    assert list(records.columns) == ["feature", "rank", "text_id", "position", "activation"]
    assert list(stats.columns) == ["feature", "max_activation", "frequency", "n_tokens"]
    got = records.reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["feature", "rank", "text_id", "position"]],
                                  want[["feature", "rank", "text_id", "position"]], check_dtype=False)
    np.testing.assert_allclose(got["activation"], want["activation"], rtol=1e-5)
    np.testing.assert_allclose(stats["max_activation"], want_stats["max_activation"], rtol=1e-5)
    np.testing.assert_allclose(stats["frequency"], want_stats["frequency"])
    assert (stats["n_tokens"] == want_stats["n_tokens"]).all()
    per = records.groupby("feature").size()
    assert 5 not in per.index and stats.set_index("feature").loc[5, "frequency"] == 0  # dead feature
    assert per[7] == 3 and per[0] == k  # the rare feature has fewer than k records


def test_top_records_rejects_bad_input(cache, sae, tmp_path):
    with pytest.raises(TableError, match="no module 'model.layers.9.mlp'"):
        top_records(cache, "model.layers.9.mlp", sae, [0])
    with pytest.raises(ValueError, match="features"):
        top_records(cache, MODULE, sae, [24])
    pooled = tmp_path / "pooled.parquet"
    pq.write_table(pq.read_table(cache, columns=["text_id", MODULE]), pooled)
    with pytest.raises(TableError, match="not a per-token"):
        top_records(pooled, MODULE, sae, [0])


def test_token_table_and_formatting_of_a_real_cache(cache, sae):
    tok = tiny_tokenizer()
    records, stats = top_records(cache, MODULE, sae, [0, 7], k=4)
    tokens = token_table(cache)
    assert list(tokens.columns) == ["text_id", "position", "token_id"]
    assert len(tokens) == pq.ParquetFile(cache).metadata.num_rows
    assert tokens.equals(token_table(cache, text_ids=tokens["text_id"].unique()))
    few = token_table(cache, text_ids=records["text_id"])
    assert set(few["text_id"]) == set(records["text_id"])
    text = format_records(records, few, tok, window=3)
    assert sorted(text) == [0, 7]
    for f, block in text.items():
        lines = block.split("\n")
        recs = records[records["feature"] == f].sort_values("rank")
        assert len(lines) == len(recs) and lines[0].endswith("(10)")
        for line, r in zip(lines, recs.itertuples()):
            ids = few[few["text_id"] == r.text_id].set_index("position")["token_id"]
            assert f"«{tok.decode([int(ids[r.position])])}»" in line
            want_context = tok.decode([int(ids[p]) for p in range(max(0, r.position - 3), r.position)])
            assert line.removeprefix("... ").startswith(want_context)
            assert line.startswith("... ") == (r.position > 3)
            assert line.endswith(f"({scale_activation(r.activation, stats.set_index('feature').max_activation[f])})")
    assert format_records(records, few, tok, window=3) == text


def test_format_records_exact_text():
    tok = tiny_tokenizer()
    ids = tok("the movie was great and the plot was awful")["input_ids"]
    tokens = pd.DataFrame({"text_id": 1, "position": np.arange(len(ids)), "token_id": ids})
    records = pd.DataFrame({"feature": [4, 4, 4, 9], "rank": [0, 1, 2, 0], "text_id": 1, "position": [3, 8, 0, 1],
                            "activation": [2.0, 1.0, 0.05, 0.3]})
    out = format_records(records, tokens, tok, window=3)
    assert out == {
        4: "the movie was «great» (10)\n... the plot was «awful» (5)\n«the» (0)",
        9: "the «movie» (10)",
    }
    with pytest.raises(ValueError, match="lacks texts"):
        format_records(records.assign(text_id=2), tokens, tok)


def test_scale_activation():
    assert [scale_activation(a, 2.0) for a in (0.0, 0.09, 0.1, 1.0, 2.0, 3.0)] == [0, 0, 1, 5, 10, 10]
    assert scale_activation(1.0, 0.0) == 0
