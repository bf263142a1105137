"""The activation cache against direct, unbatched recomputation on tiny random models."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from lensflow import io
from lensflow.cache import CacheSpec, cache_activations, iter_token_batches, read_pooled
from lensflow.hooks import NoModuleMatched, capture, match_modules
from lensflow.io import read_metadata
from tiny_models import save_tiny, tiny_model, tiny_tokenizer

TEXTS = pd.DataFrame({
    "text_id": [10, 11, 12, 13, 14],
    "text": ["the cat sat on the mat", "good film", "a very bad movie with an awful plot and awful actor",
             "love", "it was not great but the story was good"],
})


def direct(model, tok, module, text, hook="output"):
    """The module's activations for one text run alone (no padding, no batching): [pos, d]."""
    ids = tok(text, return_tensors="pt")["input_ids"]
    with capture(model, [module], hook) as store, torch.inference_mode():
        model(input_ids=ids)
        return store[module][0], ids[0]


@pytest.mark.parametrize("family,pattern", [("llama", "model.layers.*.mlp"), ("gpt_neox", "gpt_neox.layers.*.mlp")])
@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_pooled_cache_equals_direct_per_text(tmp_path, family, pattern, pooling):
    model, tok = tiny_model(family), tiny_tokenizer()
    out = tmp_path / "c.parquet"
    info = cache_activations(model, tok, TEXTS, CacheSpec([pattern], pooling=pooling), out, batch_size=2,
                             meta={"model": "tiny", "seed": 0})
    ids, acts = read_pooled(out)
    assert ids.tolist() == TEXTS["text_id"].tolist()
    assert info["modules"] == match_modules(model, [pattern]) and len(info["modules"]) == 2
    for module in info["modules"]:
        assert acts[module].shape == (len(TEXTS), 16)
        for row, text in enumerate(TEXTS["text"]):
            a, _ = direct(model, tok, module, text)
            expect = a.max(0).values if pooling == "max" else a.mean(0)
            np.testing.assert_allclose(acts[module][row], expect.numpy(), rtol=1e-4, atol=1e-5)
    meta = read_metadata(out)
    assert meta["pooling"] == pooling and meta["model"] == "tiny" and meta["seed"] == 0 and meta["dtype"] == "float32"


def test_token_cache_excludes_padding_and_records_positions(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    out = tmp_path / "t.parquet"
    cache_activations(model, tok, TEXTS, CacheSpec(["model.layers.1.mlp.down_proj"], hook="input", pooling="none"),
                      out, batch_size=3, rows_per_group=4)
    table = pq.read_table(out).to_pandas()
    lengths = [len(tok(t)["input_ids"]) for t in TEXTS["text"]]
    assert len(table) == sum(lengths)  # every real token once, no padding rows
    assert pq.ParquetFile(out).metadata.num_row_groups > 1  # written as it goes
    for text_id, text in zip(TEXTS["text_id"], TEXTS["text"]):
        rows = table[table["text_id"] == text_id].sort_values("position")
        a, ids = direct(model, tok, "model.layers.1.mlp.down_proj", text, hook="input")  # [pos, d_mlp]
        assert rows["position"].tolist() == list(range(len(ids)))
        assert rows["token_id"].tolist() == ids.tolist()
        np.testing.assert_allclose(np.stack(rows["model.layers.1.mlp.down_proj"]), a.numpy(), rtol=1e-4, atol=1e-5)
    streamed = np.concatenate(list(iter_token_batches(out, "model.layers.1.mlp.down_proj", batch_rows=7)))
    assert streamed.shape == (sum(lengths), 32) and streamed.dtype == np.float32


def test_float16_storage(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    cache_activations(model, tok, TEXTS, CacheSpec(["model.layers.0.mlp"], dtype="float16"), tmp_path / "h.parquet")
    _, acts = read_pooled(tmp_path / "h.parquet")
    assert acts["model.layers.0.mlp"].dtype == np.float16


def test_unmatched_pattern_is_an_error_naming_it(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    with pytest.raises(NoModuleMatched, match=r"transformer\.h\.\*\.mlp"):
        cache_activations(model, tok, TEXTS, CacheSpec(["transformer.h.*.mlp"]), tmp_path / "x.parquet")
    assert list(tmp_path.iterdir()) == []


def test_hooks_removed_and_nothing_written_on_error(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    boom = model.model.layers[1].register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        cache_activations(model, tok, TEXTS, CacheSpec(["model.layers.*.mlp"]), tmp_path / "x.parquet")
    boom.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file


def test_empty_text_table_is_an_error_naming_the_file(tmp_path):
    """An empty text table (e.g. an empty generated bank) stops the caching script with a message that
    names the file, not an IndexError from inside the tokenizer (issue 12, item 8)."""
    texts = tmp_path / "sentences.parquet"
    io.write_table(pd.DataFrame({"text_id": pd.Series([], dtype="int64"), "text": pd.Series([], dtype="string")}),
                   texts, {})
    path = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "cache_activations.py"
    spec = importlib.util.spec_from_file_location("cache_activations_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out" / "cache.parquet"
    params = NS(model="tiny", corpus="generated", spec={"modules": ["model.layers.*.mlp"]}, batch_size=2,
                max_length=16, bf16_autocast=False, rows_per_group=64, seed=0)
    sm = NS(input=NS(model=str(save_tiny(tmp_path / "tiny")), texts=str(texts)), output=[str(out)], params=params,
            log=[str(tmp_path / "log")], resources={}, threads=1)
    with pytest.raises(ValueError, match=f"{texts}.*no texts"):
        module.main(sm)
    assert not out.exists() and not (out.parent.exists() and list(out.parent.iterdir()))
    with pytest.raises(ValueError, match="no texts"):  # the library call, without a file to name
        cache_activations(tiny_model("llama"), tiny_tokenizer(), TEXTS.iloc[:0], CacheSpec(["model.layers.0.mlp"]),
                          tmp_path / "x.parquet")
