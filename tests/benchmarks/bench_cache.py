"""Benchmark the activation cache: throughput vs a bare forward pass, and peak memory N vs 4N texts.

Not a pytest test. Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_cache.py                        # defaults below, ~3-5 min on 2 cores
    .venv/bin/python tests/benchmarks/bench_cache.py --dtype bf16 --n 128 --repeats 5

1. Throughput: tokens/s of `cache_activations` (pooling max, then pooling none = every token) over
   `model.layers.*.mlp` outputs, against a bare loop running the same model body (`model.model`, no
   lm_head, exactly what the cache runs) over the same length-sorted, right-padded batches with no
   hooks and no writing. The cache is timed end to end (tokenising, forward, pooling, Arrow, Parquet);
   the bare loop times only the forwards. One warm-up each, then `--repeats` interleaved runs;
   wall-clock median and best, and CPU seconds (steadier when other jobs share the cores).
   Target: cache/bare >= 0.9.
2. Memory: peak RSS of caching `--mem-n` texts vs 4x that with pooling none, each in a fresh
   subprocess (this script re-invoked with --mem-child). Also the RSS right after model load, so the
   reader sees what the cache adds. Target: peak(4N)/peak(N) <= 1.2. The peak is /proc VmHWM, reset
   after the model load, not ru_maxrss: see mem_child for why.

Texts are a seeded shuffle of the texts table; the smaller corpus is a prefix of the larger.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow"))

from lensflow.core import models  # noqa: E402
from lensflow.core.cache import CacheSpec, _forward_target, cache_activations  # noqa: E402
from lensflow.core.hooks import match_modules  # noqa: E402
from lensflow.core.machine import machine_line  # noqa: E402

MODULES = ["model.layers.*.mlp"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="results/models/smollm2-135m", help="materialised model folder")
    p.add_argument("--texts", default="results/data/reviews.parquet", help="Parquet with text_id, text")
    p.add_argument("--n", type=int, default=256, help="texts for the throughput runs")
    p.add_argument("--mem-n", type=int, default=200, help="N for the memory runs (also runs 4N)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--dtype", choices=["float32", "bf16"], default="float32", help="bf16 = float32 weights + bf16 autocast")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own, = cores)")
    p.add_argument("--skip", choices=["throughput", "memory"], action="append", default=[], help="skip a part")
    p.add_argument("--mem-child", type=int, default=None, help=argparse.SUPPRESS)  # internal: one memory run
    return p.parse_args(argv)


def load(args):
    transformers.utils.logging.disable_progress_bar()
    folder = ROOT / args.model if not Path(args.model).is_absolute() else Path(args.model)
    if not (folder / "config.json").is_file():
        sys.exit(f"{folder}: no model there; run `snakemake results/models/{folder.name}` first")
    model, tok, _ = models.load(folder)
    texts = pd.read_parquet(ROOT / args.texts, columns=["text_id", "text"])
    return model, tok, texts.sample(frac=1.0, random_state=0).reset_index(drop=True)


def status_mb(key: str) -> float:
    """A /proc/self/status memory line (VmRSS = now, VmHWM = peak) in MiB."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
    return int(line.split()[1]) / 2**10


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def bare_batches(tok, texts, args):
    """The cache's own batching: tokenise, sort longest first, right-pad per batch."""
    ids = tok(list(texts["text"]), truncation=True, max_length=args.max_length)["input_ids"]
    order = np.argsort(-np.array([len(x) for x in ids]), kind="stable")
    tok.padding_side = "right"
    out = []
    for s in range(0, len(order), args.batch_size):
        b = tok.pad({"input_ids": [ids[i] for i in order[s : s + args.batch_size]]}, return_tensors="pt")
        out.append((b["input_ids"], b["attention_mask"]))
    return out, sum(len(x) for x in ids)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn(). CPU time is the steadier number when
    other jobs share the cores; wall time is what a rule waits."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def bare_loop(body, batches, bf16: bool) -> None:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for input_ids, mask in batches:
            body(input_ids=input_ids, attention_mask=mask)


def run_cache(model, tok, texts, pooling: str, args, out: Path) -> None:
    cache_activations(model, tok, texts, CacheSpec(modules=MODULES, pooling=pooling), out, batch_size=args.batch_size,
                      max_length=args.max_length, bf16_autocast=args.dtype == "bf16")
    out.unlink()


def throughput(args) -> None:
    model, tok, texts = load(args)
    texts = texts.head(args.n)
    body = _forward_target(model, match_modules(model, MODULES))
    batches, n_tok = bare_batches(tok, texts, args)
    runs = {"bare": lambda: bare_loop(body, batches, args.dtype == "bf16")}
    with tempfile.TemporaryDirectory(prefix="bench_cache.") as tmp:
        for pooling in ("max", "none"):
            out = Path(tmp) / f"cache-{pooling}.parquet"
            runs[f"cache pooling={pooling}"] = lambda p=pooling, o=out: run_cache(model, tok, texts, p, args, o)
        for fn in runs.values():  # warm-up
            fn()
        times = {k: [] for k in runs}
        for _ in range(args.repeats):  # interleaved, so drifting load hits every variant alike
            for k, fn in runs.items():
                times[k].append(timed(fn))
    print(f"\n## Throughput: {len(texts)} texts, {n_tok} tokens, batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.dtype}, {torch.get_num_threads()} torch threads, {args.repeats} repeats (load after: {load_avg()})")
    stats = {k: (statistics.median(w for w, _ in ts), min(w for w, _ in ts), statistics.median(c for _, c in ts))
             for k, ts in times.items()}
    for k, (med, best, cpu) in stats.items():
        walls = ", ".join(f"{w:.1f}" for w, _ in times[k])
        line = f"  {k:18s} wall median {n_tok / med:5.0f} tok/s, best {n_tok / best:5.0f} tok/s [{walls} s]; CPU median {cpu:5.1f} s"
        if k != "bare":
            b = stats["bare"]
            line += f"\n  {'':18s} ratio cache/bare: wall median {b[0] / med:.2f}, best {b[1] / best:.2f}, CPU {b[2] / cpu:.2f} (target >= 0.9)"
        print(line)


def mem_child(args) -> None:
    """One memory run in this (fresh) process: print a JSON line with the RSS baselines and the peak.

    Baselines: RSS right after load, and after one bare forward of one batch. The gap is the weights:
    the safetensors file is memory-mapped, so its pages count in RSS only once a forward touches them.
    Peaks come from VmHWM, not ru_maxrss: after subprocess's vfork+exec the kernel seeds a child's
    ru_maxrss with the *parent's* peak. VmHWM is reset after the warm-up, so the caching peak is not
    hidden under an earlier transient.
    """
    model, tok, texts = load(args)
    res = {"n": args.mem_child, "load_rss": status_mb("VmRSS"), "load_file": status_mb("RssFile")}
    warm_batch = bare_batches(tok, texts.head(args.batch_size), args)[0]
    bare_loop(_forward_target(model, match_modules(model, MODULES)), warm_batch, args.dtype == "bf16")
    res.update(warm_rss=status_mb("VmRSS"), warm_file=status_mb("RssFile"), reset=reset_peak())
    with tempfile.TemporaryDirectory(prefix="bench_cache.") as tmp:
        out = Path(tmp) / "cache.parquet"
        info = cache_activations(model, tok, texts.head(args.mem_child), CacheSpec(modules=MODULES, pooling="none"), out,
                                 batch_size=args.batch_size, max_length=args.max_length,
                                 bf16_autocast=args.dtype == "bf16")
        res["file_mb"] = out.stat().st_size / 2**20
    res.update(tokens=info["n_tokens"], cache_peak=status_mb("VmHWM"), end_rss=status_mb("VmRSS"),
               ru_maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10)
    print(json.dumps(res))


def memory(args, argv: list[str]) -> None:
    res = {}
    for n in (args.mem_n, 4 * args.mem_n):
        cmd = [sys.executable, __file__, *argv, "--mem-child", str(n)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n## Peak memory, pooling none (every token) of {MODULES}, fresh process per size, MiB "
          f"(load after: {load_avg()})")
    for n, r in res.items():
        peak = "peak while caching" if r["reset"] else "process peak (VmHWM reset refused)"
        print(f"  N={n:5d} ({r['tokens']:6d} tokens, file {r['file_mb']:5.0f} MiB): RSS after load {r['load_rss']:5.0f} "
              f"(file-backed {r['load_file']:.0f}), after 1 warm-up forward {r['warm_rss']:5.0f} (file-backed "
              f"{r['warm_file']:.0f}); {peak} {r['cache_peak']:5.0f} = warm + {r['cache_peak'] - r['warm_rss']:.0f}; "
              f"RSS at end {r['end_rss']:5.0f}; ru_maxrss {r['ru_maxrss']:5.0f} (may be the parent's; unused)")
    small, big = res.values()
    added = (big["cache_peak"] - big["warm_rss"]) / max(small["cache_peak"] - small["warm_rss"], 1)
    print(f"  ratio peak 4N/N {big['cache_peak'] / small['cache_peak']:.3f} (target <= 1.2); "
          f"ratio of what caching adds over the warm model 4N/N {added:.2f}")


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mem_child is not None:
        return mem_child(args)
    print(machine_line(), flush=True)
    print(f"bench_cache: {os.cpu_count()} CPU cores, cuda={torch.cuda.is_available()}, torch {torch.__version__}, "
          f"load average {load_avg()}")
    print(f"command: python {Path(__file__).relative_to(ROOT)} {' '.join(argv)}")
    if "throughput" not in args.skip:
        throughput(args)
    if "memory" not in args.skip:
        memory(args, argv)


if __name__ == "__main__":
    main()
