"""Probe inputs (lensflow.lfp.probes.data) and probes / evaluation (lensflow.lfp.probes.fit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lensflow.lfp.probes.data import probe_codes, probe_dataset
from lensflow.lfp.probes.fit import (
    error_vs_frequency,
    fit_linear_probe,
    fit_logistic_probe,
    kendall_by_word,
    kendall_negative,
    pca_coords,
    per_word,
    sample_words,
    sign_accuracy,
    split_by_triple,
    xavier_baseline,
)
from lensflow.lfp.sae.model import SparseAutoencoder
from tiny_models import tiny_model, tiny_tokenizer


# ------------------------------------------------------------------------------ probe_codes
@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=0), tiny_tokenizer()


@pytest.fixture(scope="module")
def saes():
    return {0: SparseAutoencoder(d_in=16, d_hidden=32, seed=0), 1: SparseAutoencoder(d_in=16, d_hidden=32, seed=1)}


def _rows(items):
    """items: (text, span_start, span_end) -> a triples-shaped table (one row each)."""
    return pd.DataFrame({
        "triple_id": range(len(items)), "polarity": "positive", "text": [t for t, _, _ in items],
        "span_start": [s for _, s, _ in items], "span_end": [e for _, _, e in items],
    })


def _manual(model, tok, text, token_idx, layer, sae):
    """Reference: hook block `layer`'s MLP directly, unpadded forward, encode, mean over token_idx."""
    got = {}
    handle = model.model.layers[layer].mlp.register_forward_hook(lambda m, a, out: got.__setitem__("x", out))
    try:
        with torch.no_grad():
            model(**tok([text], return_tensors="pt"))
    finally:
        handle.remove()
    acts = got["x"][0, token_idx]  # [n_tok, 16]
    with torch.no_grad():
        return sae.encode(acts).mean(0).numpy()  # [32]


ITEMS = [
    ("the cat sat on the mat", 4, 7),  # 'cat' = token 1
    ("this good film was great but the plot was bad", 5, 14),  # 'good film' = tokens 1, 2
    ("the dog sat", 5, 6),  # a span inside 'dog' still picks token 1
    ("the movie was awful", -1, -1),  # every token
]
TOKENS = [[1], [1, 2], [1], [0, 1, 2, 3]]


def test_probe_codes_shape_and_selected_tokens(tiny, saes):
    model, tok = tiny
    codes = probe_codes(model, tok, _rows(ITEMS), [0, 1], saes, batch_size=4)
    assert codes.shape == (4, 64) and codes.dtype == np.float32
    for i, ((text, _, _), idx) in enumerate(zip(ITEMS, TOKENS)):
        want = np.concatenate([_manual(model, tok, text, idx, l, saes[l]) for l in (0, 1)])
        np.testing.assert_allclose(codes[i], want, rtol=1e-5, atol=1e-6)
    # the word's codes are not the all-token mean: the span really selects
    everything = probe_codes(model, tok, _rows([(ITEMS[0][0], -1, -1)]), [0, 1], saes)
    assert not np.allclose(everything[0], codes[0])


def test_probe_codes_padding_and_layer_order(tiny, saes):
    model, tok = tiny
    tok.padding_side = "left"  # probe_codes pads right whatever the caller set, then restores it
    try:
        batched = probe_codes(model, tok, _rows(ITEMS), [0, 1], saes, batch_size=4)  # a padded batch
        assert tok.padding_side == "left"
    finally:
        tok.padding_side = "right"
    alone = np.concatenate([probe_codes(model, tok, _rows([it]), [0, 1], saes) for it in ITEMS])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)
    swapped = probe_codes(model, tok, _rows(ITEMS), [1, 0], saes)
    np.testing.assert_allclose(swapped, np.concatenate([batched[:, 32:], batched[:, :32]], axis=1), atol=1e-6)


def test_probe_codes_span_without_token_raises(tiny, saes):
    model, tok = tiny
    rows = _rows([ITEMS[0], ("the cat sat on the mat", 19, 22)])  # 'mat' = token 5, cut by max_length 3
    rows.loc[1, "triple_id"] = 7
    with pytest.raises(ValueError, match="triple 7"):
        probe_codes(model, tok, rows, [0, 1], saes, max_length=3)
    with pytest.raises(ValueError, match="no SAE"):
        probe_codes(model, tok, rows, [0, 2], saes)


@pytest.mark.parametrize("native", [False, True], ids=["avx2-only", "avx512_bf16"])
def test_probe_codes_auto_precision_follows_the_cpu(tiny, saes, monkeypatch, native):
    """`auto` (issue 13, item 1): bf16 autocast only on a CPU with native bf16, else fp32, exactly as forced."""
    from lensflow.core import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda *a, **k: {"avx2"} | ({"avx512_bf16"} if native else set()))
    model, tok = tiny
    auto = probe_codes(model, tok, _rows(ITEMS), [0, 1], saes, batch_size=4, bf16_autocast="auto")
    np.testing.assert_array_equal(auto, probe_codes(model, tok, _rows(ITEMS), [0, 1], saes, batch_size=4,
                                                    bf16_autocast=native))
    assert not np.array_equal(auto, probe_codes(model, tok, _rows(ITEMS), [0, 1], saes, batch_size=4,
                                                bf16_autocast=not native))


def test_probe_data_job_records_its_precision(tmp_path, monkeypatch):
    """The lfp_probe_data job with the default `auto` on an AVX2-only CPU: fp32, in metadata and log."""
    import importlib.util
    import json
    from pathlib import Path
    from types import SimpleNamespace as NS

    from lensflow.core import io, runtime
    from lensflow.lfp.sae.model import save_saes
    from tiny_models import save_tiny

    monkeypatch.setattr(runtime, "cpu_flags", lambda *a, **k: {"sse2", "avx2"})
    triples = pd.DataFrame({
        "triple_id": [0, 0, 0, 1, 1, 1], "polarity": ["positive", "neutral", "negative"] * 2,
        "text": ["the good film", "the plain film", "the bad film", "a great plot", "a plot", "an awful plot"],
        "word": ["good", "plain", "bad", "great", "", "awful"], "word_value": [1.9, 0.0, -2.5, 3.1, 0.0, -2.0],
        "span_start": [-1] * 6, "span_end": [-1] * 6,
    })
    io.write_table(triples, tmp_path / "triples.parquet", {})
    (tmp_path / "layers.json").write_text(json.dumps({"highest": [0, 1]}))
    save_saes({0: SparseAutoencoder(d_in=16, d_hidden=8, seed=0), 1: SparseAutoencoder(d_in=16, d_hidden=8, seed=1)},
              tmp_path / "saes.safetensors", {"variant": "n"})
    out, log = tmp_path / "probe.parquet", tmp_path / "job.log"
    sm = NS(input=NS(model=str(save_tiny(tmp_path / "tiny")), triples=str(tmp_path / "triples.parquet"),
                     saes=str(tmp_path / "saes.safetensors"), layers=str(tmp_path / "layers.json")),
            output=[str(out)], log=[str(log)], resources={}, threads=1,
            params=NS(model="tiny", batch_size=4, max_length=16, bf16_autocast="auto", seed=0))
    path = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "lfp_probe_data.py"
    spec = importlib.util.spec_from_file_location("lfp_probe_data_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(sm)
    meta = io.read_metadata(out)
    assert meta["bf16_autocast"] is False and meta["bf16_autocast_setting"] == "auto"
    assert meta["bf16_autocast_reason"].startswith("auto: cpu") and meta["bf16_autocast_reason"].endswith("-> fp32")
    assert meta["bf16_autocast_reason"] in log.read_text()


# ----------------------------------------------------------------------------- probe_dataset
def _triples_table(n):
    pol = ["positive", "neutral", "negative"]
    return pd.DataFrame({
        "triple_id": np.repeat(np.arange(n), 3), "polarity": pol * n, "text": "x",
        "word": [w for i in range(n) for w in (f"good{i}", f"plain{i}", f"bad{i}")],
        "word_value": [v for i in range(n) for v in (1.0 + i, 0.0, -1.0 - i)],
    })


def test_probe_dataset_labels_and_rescaling():
    triples = _triples_table(4).sample(frac=1.0, random_state=0).reset_index(drop=True)  # any row order
    codes = np.random.default_rng(0).normal(size=(12, 6))
    X, table = probe_dataset(triples, codes, target_max=3.4)
    assert X.shape == (8, 6) and X.dtype == np.float32
    assert list(table.columns) == ["triple_id", "polarity", "word", "word_value", "label", "label_raw"]
    assert np.isclose(np.abs(table["label"]).max(), 3.4)
    for row, x in zip(table.itertuples(), X):
        g = triples[triples["triple_id"] == row.triple_id]
        own = codes[g.index[g["polarity"] == row.polarity][0]]
        neutral = codes[g.index[g["polarity"] == "neutral"][0]]
        sign = 1.0 if row.polarity == "positive" else -1.0
        assert np.isclose(row.label_raw, sign * np.linalg.norm(own - neutral))
        np.testing.assert_allclose(x, own.astype(np.float32))
        assert row.word == g.loc[g["polarity"] == row.polarity, "word"].iloc[0]
    assert np.allclose(table["label"] / table["label_raw"], 3.4 / np.abs(table["label_raw"]).max())
    with pytest.raises(ValueError, match="exactly one positive"):
        probe_dataset(triples.iloc[1:], codes[1:], target_max=1.0)


# ---------------------------------------------------------------------------------- probes
def test_split_by_triple_keeps_pairs_together():
    table = pd.DataFrame({"triple_id": np.repeat(np.arange(50), 2)})
    test = split_by_triple(table, 0.2, seed=0)
    assert test.dtype == bool and test.sum() == 20
    assert (table[test].groupby("triple_id").size() == 2).all()
    assert (split_by_triple(table, 0.2, seed=0) == test).all()
    assert (split_by_triple(table, 0.2, seed=1) != test).any()


def test_ridge_recovers_planted_signal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 60))
    y = X @ rng.normal(size=60) + 0.1 * rng.normal(size=400)
    probe = fit_linear_probe(X[:300], y[:300], seed=0)
    r = np.corrcoef(probe.predict(X[300:]), y[300:])[0, 1]
    assert r > 0.95
    noise = fit_linear_probe(X[:300], rng.permutation(y[:300]), seed=0, cv=5)
    assert abs(np.corrcoef(noise.predict(X[300:]), y[300:])[0, 1]) < 0.4


def test_xavier_baseline_is_seeded_linear_and_bounded():
    X = np.random.default_rng(1).normal(size=(5, 40))
    f, g, h = xavier_baseline(40, seed=3), xavier_baseline(40, seed=3), xavier_baseline(40, seed=4)
    np.testing.assert_array_equal(f(X), g(X))
    assert not np.allclose(f(X), h(X))
    np.testing.assert_allclose(f(2 * X), 2 * f(X))
    assert np.allclose(f(np.zeros((1, 40))), 0.0)
    w = f(np.eye(40))  # the weights themselves
    assert np.abs(w).max() <= np.sqrt(6 / 41) and np.abs(w).max() > 0.5 * np.sqrt(6 / 41)


def test_per_word_means_and_kendall_alignment():
    table = pd.DataFrame({"word": ["a", "b", "a", "c", "d", None], "word_value": [1.0, 2.0, 1.0, 3.0, 4.0, np.nan]})
    pw = per_word(table, np.array([0.0, 3.0, 2.0, 2.0, 4.0, 9.0]))
    assert pw.set_index("word")["prediction"].to_dict() == {"a": 1.0, "b": 3.0, "c": 2.0, "d": 4.0}
    assert pw.set_index("word")["n"].to_dict() == {"a": 2, "b": 1, "c": 1, "d": 1}
    k = kendall_by_word(pw)  # values 1,2,3,4 vs predictions 1,3,2,4: 5 concordant, 1 discordant
    assert np.isclose(k["tau"], 4 / 6) and k["n_words"] == 4
    assert np.isclose(k["p"], stats.kendalltau([1, 2, 3, 4], [1, 3, 2, 4]).pvalue)
    shuffled = kendall_by_word(pw.sample(frac=1.0, random_state=2))
    assert np.isclose(shuffled["tau"], k["tau"]) and np.isclose(shuffled["p"], k["p"])
    # perfectly reversed predictions: sorting each list separately (the original bug) would say +1
    rev = pd.DataFrame({"word": list("wxyz"), "word_value": [-2.0, -1.0, 1.0, 2.0], "prediction": [4.0, 3, 2, 1]})
    assert np.isclose(kendall_by_word(rev)["tau"], -1.0)
    assert kendall_negative(rev)["n_words"] == 2 and np.isclose(kendall_negative(rev)["tau"], -1.0)


def test_sign_accuracy_constructed():
    pw = pd.DataFrame({"word": list("abcdefg"), "word_value": [2.0, 1.5, 3.0, -1.0, -2.0, -3.0, -1.2],
                       "prediction": [0.5, -0.1, 1.0, -0.3, -0.2, 0.4, -1.0], "n": 1})
    acc = sign_accuracy(pw).set_index("polarity")
    assert acc.loc["positive", "n_words"] == 3 and np.isclose(acc.loc["positive", "accuracy"], 2 / 3)
    assert acc.loc["negative", "n_words"] == 4 and np.isclose(acc.loc["negative", "accuracy"], 3 / 4)
    ci = stats.binomtest(3, 4).proportion_ci(method="wilson")
    assert np.isclose(acc.loc["negative", "ci_low"], ci.low) and np.isclose(acc.loc["negative", "ci_high"], ci.high)
    assert (acc["ci_low"] <= acc["accuracy"]).all() and (acc["accuracy"] <= acc["ci_high"]).all()


def test_sample_words_and_error_vs_frequency():
    pw = pd.DataFrame({"word": list("abcdef"), "word_value": [3.0, 2.0, 1.0, -1.0, -2.0, -3.0],
                       "prediction": [2.9, 1.5, 0.0, 0.5, 1.0, 2.0], "n": 1})
    s = sample_words(pw, 4, seed=0)
    assert len(s) == 4 and s["word_value"].is_monotonic_decreasing
    assert s.equals(sample_words(pw, 4, seed=0)) and len(sample_words(pw, 99, seed=0)) == 6
    counts = pd.DataFrame({"word": ["a", "b", "c", "d", "e", "zzz"], "count": [50, 30, 10, 5, 2, 7]})
    merged, res = error_vs_frequency(pw, counts)  # errors .1 .5 1 1.5 3 5 fall as counts rise
    assert list(merged.columns) == ["word", "abs_error", "count"]
    assert merged.set_index("word")["count"]["f"] == 0 and "zzz" not in set(merged["word"])
    assert np.isclose(merged.set_index("word")["abs_error"]["e"], 3.0)
    assert np.isclose(res["rho"], -1.0) and res["n"] == 6


def test_logistic_probe_separable_and_noise():
    rng = np.random.default_rng(0)
    y = np.where(rng.random(400) < 0.5, 1.0, -1.0)
    X = rng.normal(size=(400, 50)) + 1.5 * y[:, None] * (np.arange(50) < 5)
    test = np.zeros(400, bool)
    test[300:] = True
    res = fit_logistic_probe(X, y, test, seed=0)
    assert res["accuracy"] > 0.9 and res["n_test"] == 100
    assert res["ci_low"] < res["accuracy"] < res["ci_high"] or res["accuracy"] == 1.0
    assert 0.3 < res["majority_baseline"] < 0.7
    noise = fit_logistic_probe(rng.normal(size=(400, 50)), y, test, seed=0)
    assert 0.3 < noise["accuracy"] < 0.7


def test_pca_coords_find_the_planted_direction():
    rng = np.random.default_rng(0)
    direction = np.zeros(20)
    direction[3] = 1.0
    X = rng.normal(scale=0.1, size=(200, 20)) + rng.normal(scale=5, size=(200, 1)) * direction
    coords, evr = pca_coords(X, n_components=2, seed=0)
    assert coords.shape == (200, 2) and evr.shape == (2,)
    assert evr[0] > 0.9 and evr.sum() <= 1.0
    assert abs(np.corrcoef(coords[:, 0], X[:, 3])[0, 1]) > 0.99
