"""The streaming expertise path equals the cached path (cache -> numba kernel) on a tiny model."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lensflow.core import io
from lensflow.core.cache import CacheSpec, cache_activations
from lensflow.core.io import read_metadata
from lensflow.expertlens.expertise_store import read_ap_matrix, write_expertise
from lensflow.expertlens.expertise_stream import stream_expertise
from lensflow.expertlens.pipeline import iter_expertise
from tiny_models import WORDS, save_tiny, tiny_model, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[2]
GRID, TAUS = np.linspace(0.5, 1.0, 11), [0.5, 0.7]


def bank(seed=0, n_concepts=3, n_pos=7, n_neg=9, distinct_first=True):
    """Distinct sentences of tiny-vocabulary words; each concept's negatives are others' positives.

    distinct_first: every sentence starts with its own word. Two sentences with a common prefix have
    the same activations there, so a unit's max can tie exactly between them; computed in batches of
    other shapes (cache vs stream) such ties become float32 near-ties broken either way, and the AP
    moves by a step. With distinct first words no response is shared, so any batching gives the AP.
    """
    rng = np.random.default_rng(seed)
    n = n_concepts * n_pos
    firsts = rng.permutation(WORDS)[:n] if distinct_first else rng.choice(WORDS[:4], size=n)
    texts = [" ".join([w, *rng.choice(WORDS, size=rng.integers(1, 11))]) for w in firsts]
    assert len(set(texts)) == n
    sentences = pd.DataFrame({"text_id": np.arange(100, 100 + n), "text": texts})
    rows = []
    for c in range(n_concepts):
        own = sentences["text_id"].to_numpy()[c * n_pos : (c + 1) * n_pos]
        others = np.setdiff1d(sentences["text_id"], own)
        rows += [(f"c{c}", t, "positive") for t in own]
        rows += [(f"c{c}", t, "negative") for t in rng.choice(others, size=n_neg, replace=False)]
    return sentences, pd.DataFrame(rows, columns=["concept", "text_id", "label"])


def cached(tmp_path, model, tok, sentences, membership, spec, batch_size):
    cache = tmp_path / "units.parquet"
    cache_activations(model, tok, sentences, spec, cache, batch_size=batch_size)
    out = tmp_path / "cached.parquet"
    res = write_expertise(iter_expertise(cache, membership), out, {"table": "expertise"}, GRID, TAUS)
    return out, res


@pytest.mark.parametrize("family,patterns,hook,dtype,distinct,batches", [
    # other batch shapes than the cache's (4 vs 3), sentences without shared prefixes
    ("llama", ["model.layers.*.mlp.down_proj"], "input", "float32", True, (4, 3)),
    # (GPT-NeoX's layer 0 reads each token alone -- parallel attention and MLP on the embedding -- so its
    # max-pooled units tie between any two sentences sharing their argmax word: layer 1 here, layer 0 below)
    ("gpt_neox", ["gpt_neox.layers.1.attention.query_key_value", "gpt_neox.layers.1.mlp"], "output", "float32",
     True, (4, 3)),
    # shared prefixes (exact ties) and float16 storage (more ties): one sentence per batch on both paths,
    # the same forward, so the same pooled numbers bit for bit and the same ties
    ("llama", ["model.layers.*.mlp.down_proj"], "input", "float32", False, (1, 1)),
    ("llama", ["model.layers.*.self_attn.o_proj", "model.layers.1.mlp"], "output", "float16", False, (1, 1)),
    ("gpt_neox", ["gpt_neox.layers.*.attention.query_key_value", "gpt_neox.layers.*.mlp"], "output", "float32",
     False, (1, 1)),
])
def test_streaming_equals_the_cached_path(tmp_path, family, patterns, hook, dtype, distinct, batches):
    model, tok = tiny_model(family), tiny_tokenizer()
    sentences, membership = bank(distinct_first=distinct)
    spec = CacheSpec(patterns, hook=hook, pooling="max", dtype=dtype)
    ref_path, ref = cached(tmp_path, model, tok, sentences, membership, spec, batches[0])
    out = tmp_path / "streamed.parquet"
    res = stream_expertise(model, tok, sentences, membership, spec, out, {"table": "expertise"}, GRID, TAUS,
                           batch_size=batches[1], chunk_bytes=2000)  # small chunks of units too
    a, b = pq.read_table(ref_path).to_pandas(), pq.read_table(out).to_pandas()
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    assert a.dtypes.equals(b.dtypes)
    key = ["concept", "module", "unit"]
    a, b = a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a[key + ["layer", "kind"]], b[key + ["layer", "kind"]])
    for c in ("ap", "off_mean", "on_p50", "on_p90"):
        np.testing.assert_allclose(b[c], a[c], rtol=0, atol=1e-6, err_msg=c)
    # same file layout: one row group per module in the same order, the same summaries
    assert [m for m, _ in res["modules"]] == [m for m, _ in ref["modules"]]
    assert pq.ParquetFile(out).num_row_groups == len(ref["modules"])
    concepts, ap = read_ap_matrix(out)
    assert concepts == ref["concepts"] == ["c0", "c1", "c2"] and ap.shape == (3, ref["n_units"])
    pd.testing.assert_frame_equal(res["counts"], ref["counts"])
    pd.testing.assert_frame_equal(res["location"], ref["location"])
    meta = read_metadata(out)
    assert meta["expertise_path"] == "streaming" and meta["dtype"] == dtype and meta["modules"] == ref["modules"]
    assert meta["peak_block_bytes"] == 16 * ref["n_units"] * (4 if dtype == "float32" else 2)  # one concept's block
    assert not list(tmp_path.glob(".expertise-scratch-*"))  # scratch removed


def test_missing_sentence_and_unpooled_spec_are_errors(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    sentences, membership = bank()
    spec = CacheSpec(["model.layers.*.mlp"], pooling="max")
    with pytest.raises(io.TableError, match=r"no sentence for 1 text_id\(s\) of concept 'c0'"):
        stream_expertise(model, tok, sentences.iloc[1:], membership, spec, tmp_path / "x.parquet", {}, GRID, TAUS)
    with pytest.raises(ValueError, match="pooled"):
        stream_expertise(model, tok, sentences, membership, CacheSpec(["model.layers.*.mlp"], pooling="none"),
                         tmp_path / "x.parquet", {}, GRID, TAUS)
    assert not (tmp_path / "x.parquet").exists()


def test_streaming_script_writes_the_three_outputs(tmp_path):
    """workflow/scripts/el_expertise_stream.py as Snakemake runs it: expertise, counts, location."""
    folder = save_tiny(tmp_path / "model")
    sentences, membership = bank()
    io.write_table(sentences, tmp_path / "sentences.parquet", {})
    io.write_table(membership, tmp_path / "membership.parquet", {})
    outdir = tmp_path / "out"
    outdir.mkdir()
    sm = NS(input=NS(model=str(folder), sentences=str(tmp_path / "sentences.parquet"),
                     membership=str(tmp_path / "membership.parquet")),
            output=NS(expertise=str(outdir / "expertise.parquet"), counts=str(outdir / "counts.parquet"),
                      location=str(outdir / "location.parquet")),
            params=NS(model="tiny", dataset="mined", taus=TAUS, tau_grid=[0.5, 1.0, 11], seed=0,
                      spec={"modules": ["model.layers.*.mlp.down_proj"], "hook": "input", "pooling": "max"},
                      batch_size=4, max_length=32, bf16_autocast=False),
            log=[str(tmp_path / "log.txt")], threads=1, resources={"gpu": 0})
    path = ROOT / "workflow" / "scripts" / "el_expertise_stream.py"
    spec = importlib.util.spec_from_file_location("el_expertise_stream_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(sm)
    counts = io.read_table(outdir / "counts.parquet")
    location = io.read_table(outdir / "location.parquet")
    assert set(counts["concept"]) == {"c0", "c1", "c2"} and len(counts) == 3 * 11
    assert {"tau", "layer", "kind", "n_experts", "fraction", "model", "dataset"} <= set(location.columns)
    meta = read_metadata(outdir / "expertise.parquet")
    assert meta["model"] == "tiny" and meta["dataset"] == "mined" and meta["expertise_path"] == "streaming"
    log = (tmp_path / "log.txt").read_text()
    assert "device: cpu" in log and "forward precision" in log
