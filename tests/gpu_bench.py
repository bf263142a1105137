"""Throughput of the two GPU-heavy stages at paper batch sizes, straight through the library
(no Snakemake); tests/gpu_check.py calls `run_all` on CUDA.

1. Activation caching: `lensflow.core.cache.cache_activations` (the public function the workflow runs)
   with paper.yaml's ExpertLens cache (every linear layer of every GPT-NeoX block, output, max-pooled
   in the hooks, float32 Parquet) over a randomly initialised GPTNeoXForCausalLM with pythia-1b's
   real dimensions in bf16, batch 64 x 128 tokens (paper.yaml's activations.batch_size/max_length).
   Timed end to end (tokenising, forward, pooling, copies to the host, Parquet), after a one-batch
   warm-up; beside it the same batches through the bare model body (no hooks, no writing). Peak GPU
   memory is torch.cuda.max_memory_allocated over the cached run.
2. SAE training: `lensflow.lfp.sae.model.train_sae`, tied, on random [n, 2048] float32 host batches (as the
   Parquet reader yields them), at batch 32 (the paper's) and 4096, d_sae 2048 and 4096; examples/s
   after a short untimed warm-up run, and what one paper SAE (75,000 examples at batch 32) takes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lensflow.core.cache import CacheSpec, _forward_target, cache_activations
from lensflow.core.hooks import match_modules
from lensflow.lfp.sae.model import train_sae

# pythia-1b (EleutherAI/pythia-1b config.json)
PYTHIA_1B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8, intermediate_size=8192,
                 vocab_size=50304, rotary_pct=0.25, use_parallel_residual=True, max_position_embeddings=2048)
LINEARS = ["gpt_neox.layers.*.attention.query_key_value", "gpt_neox.layers.*.attention.dense",
           "gpt_neox.layers.*.mlp.dense_h_to_4h", "gpt_neox.layers.*.mlp.dense_4h_to_h"]
PAPER_SAE_EXAMPLES = 75_000


def word_tokenizer(n_words: int = 8000):
    """A word-level tokenizer over w0..w{n-1} with a pad token: every text of >= max_length words
    tokenizes to exactly max_length ids, so batches are full."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, **{f"w{i}": i + 2 for i in range(n_words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def random_texts(n: int, words: int, n_vocab: int = 8000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_vocab, size=(n, words))
    return pd.DataFrame({"text_id": np.arange(n), "text": [" ".join(f"w{i}" for i in row) for row in ids]})


def pythia_like(device: str, dims: dict = PYTHIA_1B):
    """Random-weight GPTNeoXForCausalLM of `dims`, built on `device` in bf16 (no host copy)."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(GPTNeoXConfig(**dims), dtype=torch.bfloat16)
    return model.eval()


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bench_cache(device: str = "cuda", batch_size: int = 64, max_length: int = 128, n_batches: int = 8,
                dims: dict = PYTHIA_1B) -> dict:
    model, tok = pythia_like(device, dims), word_tokenizer()
    texts = random_texts(batch_size * n_batches, max_length + 16)
    spec = CacheSpec(modules=LINEARS, hook="output", pooling="max", dtype="float32")
    names = match_modules(model, LINEARS)
    cuda = torch.device(device).type == "cuda"
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as tmp:
        run = lambda df, name: cache_activations(model, tok, df, spec, Path(tmp) / name, batch_size=batch_size,  # noqa: E731
                                                 max_length=max_length, device=device, bf16_autocast="auto")
        run(texts.head(batch_size), "warmup.parquet")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        info = run(texts, "cache.parquet")
        _sync(device)
        seconds = time.perf_counter() - start
        file_mb = (Path(tmp) / "cache.parquet").stat().st_size / 2**20
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    ids = torch.randint(2, 8002, (batch_size, max_length), device=device)  # [batch, pos]
    body = _forward_target(model, names)
    with torch.inference_mode():
        body(input_ids=ids, use_cache=False)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(n_batches):
            body(input_ids=ids, use_cache=False)
        _sync(device)
        bare = time.perf_counter() - start
    del model
    if cuda:
        torch.cuda.empty_cache()
    n_tok = info["n_tokens"]
    return {"model": "GPTNeoXForCausalLM, pythia-1b dims, random, bf16", "modules": len(names),
            "batch_size": batch_size, "max_length": max_length, "n_texts": len(texts), "n_tokens": n_tok,
            "precision": info.get("bf16_autocast_reason"), "seconds": round(seconds, 3),
            "tokens_per_s": round(n_tok / seconds), "bare_forward_tokens_per_s": round(n_tok / bare),
            "cache_vs_bare": round(bare / seconds, 3), "parquet_mib": round(file_mb, 1),
            "peak_gpu_gib": None if peak is None else round(peak, 2)}


def bench_sae(device: str = "cuda", d_in: int = 2048, batch_size: int = 32, d_sae: int = 2048, steps: int = 1500,
              warmup: int = 50, pool_batches: int = 16) -> dict:
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(batch_size, d_in, generator=gen).numpy() for _ in range(pool_batches)]  # host [b, d_in]
    train_sae(batches, d_in, d_sae, tied=True, n_steps=warmup, device=device, log_every=warmup)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    train_sae(batches, d_in, d_sae, tied=True, n_steps=steps, device=device, log_every=max(1, steps // 50))
    _sync(device)
    seconds = time.perf_counter() - start
    rate = steps * batch_size / seconds
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else None
    return {"d_in": d_in, "d_sae": d_sae, "batch_size": batch_size, "tied": True, "steps": steps,
            "seconds": round(seconds, 3), "examples_per_s": round(rate), "steps_per_s": round(steps / seconds, 1),
            "paper_sae_seconds": round(PAPER_SAE_EXAMPLES / rate, 1),
            "peak_gpu_gib": None if peak is None else round(peak, 3)}


SAE_RUNS = [(32, 2048, 1500), (32, 4096, 1500), (4096, 2048, 150), (4096, 4096, 150)]  # (batch, d_sae, steps)


def run_all(device: str = "cuda", log=print) -> dict:
    """Both benchmarks; a failing one is recorded with its error and the other still runs."""
    out: dict = {"cache": None, "sae": [], "errors": []}
    try:
        out["cache"] = bench_cache(device)
        log(f"cache: {out['cache']}")
    except Exception as e:  # an OOM or API change is a finding to report, not a reason to stop
        out["errors"].append(f"cache: {type(e).__name__}: {e}")
        log(out["errors"][-1])
    for batch, d_sae, steps in SAE_RUNS:
        try:
            out["sae"].append(bench_sae(device, batch_size=batch, d_sae=d_sae, steps=steps))
            log(f"sae: {out['sae'][-1]}")
        except Exception as e:
            out["errors"].append(f"sae batch {batch} d_sae {d_sae}: {type(e).__name__}: {e}")
            log(out["errors"][-1])
    return out
