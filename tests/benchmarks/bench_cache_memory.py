"""Benchmark peak memory of a pooled activation cache: pooling after the forward (old) vs in the hook.

Not a pytest test. Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_cache_memory.py --tiny                 # seconds: a smoke run
    .venv/bin/python tests/benchmarks/bench_cache_memory.py                        # synthetic Llama, d=256
    .venv/bin/python tests/benchmarks/bench_cache_memory.py --model results/models/smollm2-135m
    .venv/bin/python tests/benchmarks/bench_cache_memory.py --device cuda --model results/models/...

The old way (`cache_activations(..., pool_in_hook=False)`) keeps every hooked module's
[batch, pos, d] output until the batch's forward ends, then pools; the new way pools each output to
[batch, d] inside its hook, so a batch holds one module's [batch, pos, d] at a time (issue 13,
item 2). The grid is sequence length (`--lengths`) x module count (`--patterns`: by default each
block's MLP, then every submodule of every block); each cell runs both ways, each in a fresh
process (this script re-invoked with --child), on `--n` synthetic texts that all fill max_length.

Measured per run:
- tensor peak: the largest total of live tensors while caching, from the torch profiler's memory
  timeline on CPU (`torch.cuda.max_memory_allocated` on CUDA), above what was live before (the
  weights). tracemalloc cannot see these: torch allocates outside Python's allocator.
- RSS peak: /proc VmHWM, reset after a warm-up run, minus the RSS before the run (what the process
  really took, allocator slack included; CPU only).
- expected: what the old way holds at once, modules x batch x length x d x 4 bytes (float32).

The header names the machine (CPU model, the flags that matter, cores, torch): memory does not
depend on them, but every benchmark here states it. Nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from lensflow.core.cache import CacheSpec, cache_activations  # noqa: E402
from lensflow.core.hooks import match_modules  # noqa: E402
from lensflow.core.runtime import cpu_flags, cpu_model, resolve_bf16_autocast  # noqa: E402

FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="materialised model folder (default: a synthetic Llama)")
    p.add_argument("--tiny", action="store_true", help="smoke run: tests/support/tiny_models.py's 2-layer d=16 model, short texts")
    p.add_argument("--d", type=int, default=256, help="synthetic model: hidden width")
    p.add_argument("--layers", type=int, default=4, help="synthetic model: blocks")
    p.add_argument("--lengths", default="32,128,512", help="comma-separated max_length values (every text fills it)")
    p.add_argument("--patterns", default=None,
                   help="';'-separated module pattern sets, each ','-separated (default: <blocks>.*.mlp;<blocks>.*)")
    p.add_argument("--pooling", choices=["max", "mean"], default="max")
    p.add_argument("--n", type=int, default=16, help="texts per run")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bf16-autocast", default="false", choices=["true", "false", "auto"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one run, JSON in
    args = p.parse_args(argv)
    if args.tiny:
        args.lengths = "16,64" if args.lengths == p.get_default("lengths") else args.lengths
        args.n = min(args.n, 8)
    return args


def machine() -> str:
    flags = cpu_flags()
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in FLAGS_THAT_MATTER)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpu = ""
    if torch.cuda.is_available():
        gpu = f"; GPU {torch.cuda.get_device_name(0)}"
    return (f"CPU {cpu_model()} ({platform.machine()}); flags: {have}; cores: {os.cpu_count()} "
            f"({usable} usable), torch threads {torch.get_num_threads()}; torch {torch.__version__}, "
            f"transformers {transformers.__version__}, Python {platform.python_version()}{gpu}")


def build(args):
    """(model, tokenizer, block prefix) on args.device."""
    transformers.utils.logging.disable_progress_bar()
    from tiny_models import tiny_model, tiny_tokenizer

    lengths = [int(x) for x in args.lengths.split(",")]
    if args.model:
        from lensflow.core import models

        folder = Path(args.model) if Path(args.model).is_absolute() else ROOT / args.model
        model, tok, _ = models.load(folder, device=args.device)
    elif args.tiny:
        model, tok = tiny_model("llama"), tiny_tokenizer()
        if max(lengths) > model.config.max_position_embeddings:
            sys.exit(f"--tiny: lengths up to {model.config.max_position_embeddings}")
    else:
        torch.manual_seed(0)
        tok = tiny_tokenizer()
        cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=args.d, intermediate_size=4 * args.d,
                                       num_hidden_layers=args.layers, num_attention_heads=max(1, args.d // 64),
                                       max_position_embeddings=max(lengths), pad_token_id=0, bos_token_id=2,
                                       eos_token_id=3)
        model = transformers.LlamaForCausalLM(cfg).eval()
    model.to(args.device)
    names = [n for n, _ in model.named_modules()]
    prefix = next((p for p in ("model.layers", "gpt_neox.layers", "transformer.h", "model.decoder.layers")
                   if f"{p}.0" in names), None)
    if prefix is None and not args.patterns:
        sys.exit("cannot tell this model's block prefix; pass --patterns")
    return model, tok, prefix


def texts_of(tok, n: int, length: int) -> pd.DataFrame:
    """n seeded texts of real words, each longer than `length` tokens (truncation makes them equal)."""
    rng = np.random.default_rng(0)
    vocab = "the a cat dog sat on mat good bad film movie great awful plot actor love story scene".split()
    return pd.DataFrame({"text_id": range(n), "text": [" ".join(rng.choice(vocab, size=length + 8)) for _ in range(n)]})


def _profiled_peak(fn) -> int:
    """Peak bytes of live CPU tensors while fn() runs (torch profiler memory timeline)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    return int(max(sum(s) for s in sizes)) if sizes else 0


def _status_mb(key: str) -> float | None:
    try:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 2**10


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(args) -> None:
    """One (length, patterns, way) run in this fresh process; prints one JSON line."""
    job = json.loads(args.child)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok, _ = build(args)
    length, patterns, in_hook = job["length"], job["patterns"], job["in_hook"]
    texts = texts_of(tok, args.n, length)
    names = match_modules(model, patterns)
    setting = {"true": True, "false": False}.get(args.bf16_autocast, "auto")
    spec = CacheSpec(patterns, pooling=args.pooling)
    widths = {}
    with tempfile.TemporaryDirectory(prefix="bench_cache_memory.") as tmp:
        out = Path(tmp) / "c.parquet"

        def run():
            info = cache_activations(model, tok, texts, spec, out, batch_size=args.batch_size, max_length=length,
                                     device=args.device, bf16_autocast=setting, pool_in_hook=in_hook)
            widths.update(info["widths"])
            out.unlink()

        run()  # warm-up: lazy inits and allocator growth do not count as the cache's
        res = {**job, "n_modules": len(names)}
        if args.device == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            run()
            torch.cuda.synchronize()
            res["tensor_peak_mb"] = (torch.cuda.max_memory_allocated() - before) / 2**20
            res["rss_peak_mb"] = None
        else:
            rss0, reset = _status_mb("VmRSS"), _reset_peak()
            run()
            hwm = _status_mb("VmHWM")
            res["rss_peak_mb"] = (hwm - rss0) if (reset and hwm is not None and rss0 is not None) else None
            res["tensor_peak_mb"] = _profiled_peak(run) / 2**20
    rows = min(args.batch_size, args.n)
    res["expected_old_mb"] = sum(widths.values()) * rows * length * 4 / 2**20
    res["precision"] = resolve_bf16_autocast(setting, args.device).reason
    print(json.dumps(res))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    _, _, prefix = build(args)
    sets = ([s.split(",") for s in args.patterns.split(";")] if args.patterns
            else [[f"{prefix}.*.mlp"], [f"{prefix}.*"]])
    print(f"# Peak memory of a pooled cache (pooling {args.pooling}), pooling after the forward (old) vs in the hook")
    print(f"Machine: {machine()}")
    what = args.model or ("tests/support/tiny_models.py llama (d=16, 2 blocks)" if args.tiny else
                          f"synthetic Llama d={args.d}, {args.layers} blocks")
    print(f"Model: {what}; device {args.device}; {args.n} texts, batch {args.batch_size}; "
          f"bf16_autocast {args.bf16_autocast}")
    rows = []
    for length in [int(x) for x in args.lengths.split(",")]:
        for patterns in sets:
            for in_hook in (False, True):
                job = json.dumps({"length": length, "patterns": patterns, "in_hook": in_hook})
                cmd = [sys.executable, __file__, *argv, "--child", job]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"child run {job} failed:\n{proc.stderr[-3000:]}")
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"Precision: {rows[0]['precision']}\n")

    def mb(x):
        return "n/a" if x is None else f"{x:8.2f}"

    print("| length | patterns | modules | old holds, as float32 (MiB) | tensor peak old | tensor peak in-hook "
          "| RSS peak old | RSS peak in-hook |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for old, new in zip(rows[::2], rows[1::2]):
        print(f"| {old['length']} | {','.join(old['patterns'])} | {old['n_modules']} | {mb(old['expected_old_mb'])} "
              f"| {mb(old['tensor_peak_mb'])} | {mb(new['tensor_peak_mb'])} | {mb(old['rss_peak_mb'])} "
              f"| {mb(new['rss_peak_mb'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
