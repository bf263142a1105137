"""The activation cache against direct, unbatched recomputation on tiny random models."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from lensflow.core import io
from lensflow.core.cache import CacheSpec, cache_activations, iter_token_batches, read_pooled
from lensflow.core.hooks import NoModuleMatched, capture, match_modules
from lensflow.core.io import read_metadata
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
    path = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "cache_activations.py"
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


# ------------------------------------------------------------ pooling inside the hook (issue 13, item 2)
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("pooling", ["max", "mean"])
@pytest.mark.parametrize("family,pattern,hook", [
    ("llama", "model.layers.*", "output"),  # every submodule: tuples (attention), 16- and 32-wide outputs
    ("gpt_neox", "gpt_neox.layers.*.mlp", "output"),
    ("llama", "model.layers.*.mlp.down_proj", "input"),
])
def test_pooling_in_the_hook_is_bit_for_bit_the_old_pooling(tmp_path, family, pattern, hook, pooling, bf16):
    """Each hook now pools its module's output to [batch, d] as the forward runs; the numbers are the
    ones the old code got by keeping every [batch, pos, d] output and pooling after the forward, bit
    for bit, with padding in every batch (5 texts of different lengths, batches of 3) and under bf16."""
    model, tok = tiny_model(family), tiny_tokenizer()
    spec = CacheSpec([pattern], hook=hook, pooling=pooling)
    new, old = tmp_path / "new.parquet", tmp_path / "old.parquet"
    cache_activations(model, tok, TEXTS, spec, new, batch_size=3, bf16_autocast=bf16)
    cache_activations(model, tok, TEXTS, spec, old, batch_size=3, bf16_autocast=bf16, pool_in_hook=False)
    ids_new, got = read_pooled(new)
    ids_old, want = read_pooled(old)
    assert ids_new.tolist() == ids_old.tolist() == TEXTS["text_id"].tolist()
    assert list(got) == list(want) and len(got) >= 1
    for module in want:
        assert got[module].dtype == np.float32
        np.testing.assert_array_equal(got[module], want[module])
    assert read_metadata(new)["bf16_autocast"] is bf16


def test_bf16_path_really_runs_in_bf16(tmp_path):
    """The bf16 case above is not fp32 in disguise: its numbers differ from fp32's (slightly)."""
    model, tok = tiny_model("llama"), tiny_tokenizer()
    spec = CacheSpec(["model.layers.*.mlp"])
    cache_activations(model, tok, TEXTS, spec, tmp_path / "a.parquet", batch_size=3, bf16_autocast=True)
    cache_activations(model, tok, TEXTS, spec, tmp_path / "b.parquet", batch_size=3, bf16_autocast=False)
    _, bf16 = read_pooled(tmp_path / "a.parquet")
    _, fp32 = read_pooled(tmp_path / "b.parquet")
    for module in fp32:
        assert not np.array_equal(bf16[module], fp32[module])
        np.testing.assert_allclose(bf16[module], fp32[module], rtol=0.1, atol=0.05)


def _peak_tensor_bytes(fn) -> int:
    """Peak bytes of live CPU tensors while `fn` runs (torch profiler memory timeline)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    return int(max(sum(s) for s in sizes))


def test_pooled_cache_peak_memory_does_not_grow_with_modules_times_length(tmp_path):
    """Memory of a pooled cache = model + one module's activations: with every submodule of 6 layers
    hooked on 64-token texts, the old way holds 78 [batch, pos, d] outputs at once; pooling in the
    hook holds 78 [batch, d] rows. Tensor memory measured with the torch profiler (CPU)."""
    tok = tiny_tokenizer()
    long_texts = pd.DataFrame({"text_id": range(8), "text": [" ".join(["the cat sat on the mat"] * 12)] * 8})

    def peak(n_layers, in_hook):
        model = tiny_model("llama", n_layers=n_layers)
        spec = CacheSpec(["model.layers.*"], pooling="max")
        out = tmp_path / f"{n_layers}-{in_hook}.parquet"
        return _peak_tensor_bytes(lambda: cache_activations(model, tok, long_texts, spec, out, batch_size=8,
                                                            max_length=64, pool_in_hook=in_hook))

    old1, old6, new1, new6 = peak(1, False), peak(6, False), peak(1, True), peak(6, True)
    one_output = 8 * 64 * 16 * 4  # [batch, pos, d] float32
    assert old6 - old1 > 40 * one_output  # the old way: every hooked module's output kept (65 more here)
    # in the hook: 65 more [batch, d] rows and 5 layers' weights (~0.1 MB here), no [batch, pos, d]
    assert new6 - new1 < (old6 - old1) / 8
    assert new6 < old6 / 3


def test_unknown_pooling_fails_before_any_forward(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    with pytest.raises(ValueError, match="median"):
        cache_activations(model, tok, TEXTS, CacheSpec(["model.layers.0.mlp"], pooling="median"), tmp_path / "x.parquet")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------ precision chosen by the hardware (issue 13, item 1)
@pytest.mark.parametrize("native", [False, True], ids=["avx2-only", "avx512_bf16"])
def test_auto_precision_is_recorded_and_used(tmp_path, monkeypatch, native):
    from lensflow.core import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda *a, **k: {"avx2", "avx512f"} | ({"avx512_bf16"} if native else set()))
    model, tok = tiny_model("llama"), tiny_tokenizer()
    spec = CacheSpec(["model.layers.*.mlp"])
    info = cache_activations(model, tok, TEXTS, spec, tmp_path / "auto.parquet", batch_size=3, bf16_autocast="auto")
    cache_activations(model, tok, TEXTS, spec, tmp_path / "forced.parquet", batch_size=3, bf16_autocast=native)
    meta = read_metadata(tmp_path / "auto.parquet")
    assert meta["bf16_autocast"] is native and info["bf16_autocast"] is native
    assert meta["bf16_autocast_setting"] == "auto"
    assert meta["bf16_autocast_reason"].startswith("auto: cpu")
    assert meta["bf16_autocast_reason"].endswith("-> bf16" if native else "-> fp32")
    _, auto = read_pooled(tmp_path / "auto.parquet")
    _, forced = read_pooled(tmp_path / "forced.parquet")
    for module in forced:
        np.testing.assert_array_equal(auto[module], forced[module])
    forced_meta = read_metadata(tmp_path / "forced.parquet")
    assert forced_meta["bf16_autocast_setting"] is native and forced_meta["bf16_autocast_reason"].startswith(
        f"{str(native).lower()}: forced")


def _script(name):
    path = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cache_job_on_an_avx2_only_cpu_runs_fp32_and_says_so(tmp_path, monkeypatch):
    """The rule's job with the default `auto` on a CPU without native bf16: fp32, in the output's metadata
    and in the job's log."""
    from lensflow.core import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda *a, **k: {"sse2", "avx", "avx2", "fma"})
    texts = tmp_path / "texts.parquet"
    io.write_table(TEXTS, texts, {})
    out, log = tmp_path / "out" / "cache.parquet", tmp_path / "job.log"
    params = NS(model="tiny", corpus="c", spec={"modules": ["model.layers.*.mlp"]}, batch_size=2,
                max_length=16, bf16_autocast="auto", rows_per_group=64, seed=0)
    sm = NS(input=NS(model=str(save_tiny(tmp_path / "tiny")), texts=str(texts)), output=[str(out)], params=params,
            log=[str(log)], resources={}, threads=1)
    _script("cache_activations").main(sm)
    meta = read_metadata(out)
    assert meta["bf16_autocast"] is False and meta["bf16_autocast_setting"] == "auto"
    assert "without avx512_bf16/amx_bf16" in meta["bf16_autocast_reason"]
    assert meta["bf16_autocast_reason"] in log.read_text()


@pytest.mark.parametrize("family,pattern", [("llama", "model.layers.*"), ("gpt_neox", "gpt_neox.layers.*")])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_forward_without_kv_cache_gives_the_same_numbers(family, pattern, bf16):
    """The cache's forward passes use_cache=False (a KV cache for every layer that one forward never
    reads); every hooked output is bit for bit what the default forward gives, padding included."""
    model, tok = tiny_model(family, n_layers=3), tiny_tokenizer()
    names = match_modules(model, [pattern])
    tok.padding_side = "right"
    batch = tok(list(TEXTS["text"]), return_tensors="pt", padding=True)
    got = []
    for extra in ({}, {"use_cache": False}):
        with capture(model, names) as store, torch.inference_mode(), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **extra)
            got.append(dict(store))
    for name in names:
        assert torch.equal(got[0][name], got[1][name]), name
