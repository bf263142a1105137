"""Benchmark: the streaming expertise path's peak memory and time, N vs 4N sentences and 1x vs 4x units
(CPU torch), and the torch expertise kernel against the numba kernel on the same data (CPU).

Not a test (pytest does not collect bench_*.py). Part 1 runs `lensflow.expertlens.expertise_stream.stream_expertise`
end to end (forward with pooling hooks, per-concept block, torch AP, scratch, Parquet writer) on a random
GPT-NeoX model (hidden 128, MLP 4096, 4 layers: the forward costs the same whatever is hooked), each
configuration in a fresh process. Units: 1x = `layers.0.mlp.dense_h_to_4h` (4096), 4x = every layer's
(16384). Sentences: N = concepts x (positives + negatives) sentence slots; 4N = 4x the concepts, the same
per-concept block. Peak memory = the process's peak RSS minus its RSS just before the call, for the
concept loop (forward, blocks, AP) and for the writing of the table (one module's rows for every concept)
apart (/proc/self/clear_refs resets the peak between them; elsewhere ru_maxrss over the whole run, which
includes the model); glibc's mmap threshold is fixed unless --glibc-default (see part1). Part 2 times
`lensflow.expertlens.expertise_torch.expertise_stats` and `lensflow.expertlens.expertise.expertise_table` on one
[sentences, units] block and reports the largest difference.

Usage (from the repo root):
    .venv/bin/python tests/benchmarks/bench_expertise_stream.py                      # small defaults
    .venv/bin/python tests/benchmarks/bench_expertise_stream.py --concepts 8 --positives 500 \
        --ap-sentences 2000 --ap-units 20000
Prints the machine, then Markdown tables to paste into tests/benchmarks/RESULTS.md.
"""

import argparse
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "workflow"), str(ROOT / "tests" / "support")]

UNITS = {"1x": ["gpt_neox.layers.0.mlp.dense_h_to_4h"], "4x": ["gpt_neox.layers.*.mlp.dense_h_to_4h"]}


def machine() -> str:
    import numba
    import torch

    from lensflow.core.runtime import cpu_flags, cpu_model

    flags = cpu_flags()
    has = {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16")}
    has["amx"] = bool({"amx_bf16", "amx_tile"} & flags)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    line = (f"machine: {cpu_model()}, {platform.machine()}, {os.cpu_count()} logical cores ({usable} usable); "
            + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in has.items())
            + f"; torch {torch.__version__} ({torch.get_num_threads()} threads), numba {numba.__version__}, "
            f"numpy {np.__version__}; CUDA {'yes' if torch.cuda.is_available() else 'no'}; load average {load}")
    try:  # the shared one-line description, where present (tests/benchmarks/RESULTS.md)
        from lensflow.core.machine import describe, machine_line

        line += "\n" + machine_line(describe(with_torch=True))
    except Exception:  # noqa: BLE001 (the line above already names the machine)
        pass
    return line


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def bank(n_concepts, n_pos, n_neg, seed):
    """Distinct random sentences over the tiny vocabulary; negatives drawn from other concepts' positives."""
    import pandas as pd

    from tiny_models import WORDS

    rng = np.random.default_rng(seed)
    n = n_concepts * n_pos
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(6, 17))) for _ in range(n)]
    sentences = pd.DataFrame({"text_id": np.arange(n), "text": texts})
    rows = []
    for c in range(n_concepts):
        own = np.arange(c * n_pos, (c + 1) * n_pos)
        others = np.setdiff1d(np.arange(n), own)
        rows += [(f"c{c:03d}", t, "positive") for t in own]
        rows += [(f"c{c:03d}", t, "negative") for t in rng.choice(others, size=n_neg, replace=n_neg > len(others))]
    return sentences, pd.DataFrame(rows, columns=["concept", "text_id", "label"])


def stream_run(args, concepts, units):
    """One configuration, in its own process: (wall s, kernel s, peak MiB above the start, block MiB)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from lensflow.core.cache import CacheSpec
    from lensflow.expertlens import expertise_stream as es
    from tiny_models import WORDS, tiny_tokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=len(WORDS) + 4, hidden_size=128, intermediate_size=4096, num_hidden_layers=4,
                        num_attention_heads=4, max_position_embeddings=64, pad_token_id=0)
    model, tok = GPTNeoXForCausalLM(cfg).eval(), tiny_tokenizer()
    sentences, membership = bank(concepts, args.positives, args.negatives, args.seed)
    kernel = [0.0]
    inner = es.expertise_stats

    def timed(*a, **k):
        t = time.perf_counter()
        out = inner(*a, **k)
        kernel[0] += time.perf_counter() - t
        return out

    es.expertise_stats = timed
    exact, start_kib = False, 0  # set just before the measured call
    peaks = {}  # MiB above the start: the concept loop (forward, blocks, kernel) and the writing
    write = es.write_expertise

    def phased(*a, **k):  # the loop is over when the writer starts
        if exact:
            peaks["loop"] = (_rss_kib("VmHWM") - start_kib) / 1024
            _reset_peak()
        out = write(*a, **k)
        if exact:
            peaks["write"] = (_rss_kib("VmHWM") - start_kib) / 1024
        return out

    es.write_expertise = phased
    spec = CacheSpec(UNITS[units], hook="output", pooling="max")
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up (one concept, first allocations), outside the measurement
        first = membership[membership["concept"] == membership["concept"].iloc[0]]
        es.stream_expertise(model, tok, sentences, first, spec, Path(tmp) / "w.parquet", {}, [0.5, 1.0], [0.5],
                            batch_size=args.batch_size, max_length=32)
        kernel[0] = 0.0
        exact = _reset_peak()
        peaks.clear()
        start_kib = _rss_kib("VmRSS") if exact else 0
        t = time.perf_counter()
        res = es.stream_expertise(model, tok, sentences, membership, spec, Path(tmp) / "e.parquet", {},
                                  np.linspace(0.5, 1.0, 501), [0.5, 0.9], batch_size=args.batch_size,
                                  max_length=32)
        wall = time.perf_counter() - t
        peak_kib = (_rss_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) - start_kib
    peak = f"{peaks['loop']:.0f} / {peaks['write']:.0f}" if exact else f"{peak_kib / 1024:.0f} (ru_maxrss, whole run)"
    return wall, kernel[0], peak, res["info"]["peak_block_bytes"] / 2**20, res["n_units"], exact


def part1(args):
    if not args.glibc_default:
        # glibc raises its mmap threshold (up to 32 MB) after freeing a large block, so later activations
        # land in the heap and fragment it: RSS then creeps up with the run's length, not with what is
        # live. A fixed threshold returns freed blocks at once; the children inherit it (spawned).
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
        os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "131072")
    ctx = mp.get_context("spawn")
    rows = []
    for units in args.units.split(","):
        for mult in map(int, args.mults.split(",")):
            concepts = args.concepts * mult
            with ctx.Pool(1) as pool:
                wall, kern, peak, block, n_units, exact = pool.apply(stream_run, (args, concepts, units))
            n = concepts * (args.positives + args.negatives)
            bank_mib = concepts * args.positives * n_units * 4 / 2**20  # what the el-units cache holds (float32)
            rows.append((f"{'' if mult == 1 else mult}N", n, concepts, units, n_units, wall, kern, peak, block,
                         bank_mib, exact))
            print(f"  done: {rows[-1][:4]} in {wall:.1f} s", file=sys.stderr, flush=True)
    glibc = "glibc default malloc" if args.glibc_default else "MALLOC_MMAP_THRESHOLD_=131072"
    print(f"\n### Streaming path (CPU torch, {args.threads} thread(s)): {args.positives} positives + "
          f"{args.negatives} negatives per concept, batch {args.batch_size}, {glibc}")
    print("| sentences | sentence slots | concepts | units | n units | wall (s) | of which AP kernel (s) "
          "| peak RSS above start (MiB): concept loop / writing the table | one concept's block (MiB) | the bank's responses, float32 (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, n, c, u, nu, wall, kern, peak, block, bank_mib, exact in rows:
        print(f"| {label} | {n} | {c} | {u} | {nu} | {wall:.2f} | {kern:.2f} | {peak} "
              f"| {block:.1f} | {bank_mib:.0f} |")


def part2(args):
    import torch

    from lensflow.expertlens.expertise import expertise_table
    from lensflow.expertlens.expertise_torch import expertise_stats

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    n, u = args.ap_sentences, args.ap_units
    labels = np.zeros(n, dtype=bool)
    labels[: n // 2] = True
    shift = np.where(rng.random(u) < 1 / 3, rng.gamma(2.0, 0.5, u), 0.0)
    print(f"\n### Torch expertise kernel vs numba kernel, CPU: {n} sentences ({labels.sum()} positive) x {u} units, "
          f"best of {args.repeats}")
    print("| data | numba `expertise_table` (s), 1 thread | torch `expertise_stats` (s), "
          f"{args.threads} thread(s) | torch / numba | max abs diff (4 statistics) |")
    print("|---|---|---|---|---|")
    for kind in ("float32", "ties (0.25 grid)"):
        x = rng.standard_normal((n, u)) + labels[:, None] * shift[None, :]
        x = (np.round(x * 4) / 4 if kind.startswith("ties") else x).astype(np.float32)
        expertise_table(x[:, :8], labels)  # compile / load the numba kernels
        xt = torch.from_numpy(x)
        expertise_stats(xt[:, :8], labels)
        best_numba = best_torch = np.inf
        for _ in range(args.repeats):
            t = time.perf_counter()
            ref = expertise_table(x, labels, threads=1)
            best_numba = min(best_numba, time.perf_counter() - t)
            t = time.perf_counter()
            got = expertise_stats(xt, labels).numpy()
            best_torch = min(best_torch, time.perf_counter() - t)
        ref = ref[["ap", "off_mean", "on_p50", "on_p90"]].to_numpy().T
        diff = float(np.nanmax(np.abs(got - ref)))
        print(f"| {kind} | {best_numba:.2f} | {best_torch:.2f} | {best_torch / best_numba:.1f}x | {diff:.1e} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", type=int, default=4, help="concepts at N (4N: 4x as many)")
    ap.add_argument("--positives", type=int, default=100)
    ap.add_argument("--negatives", type=int, default=100)
    ap.add_argument("--mults", default="1,4", help="sentence counts as multiples of N (more concepts)")
    ap.add_argument("--units", default="1x,4x", help="hooked units: 1x (4096) and/or 4x (16384)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--ap-sentences", type=int, default=1000)
    ap.add_argument("--ap-units", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--glibc-default", action="store_true", help="keep glibc's dynamic mmap threshold (part 1)")
    ap.add_argument("--part", choices=["all", "stream", "kernel"], default="all")
    args = ap.parse_args()
    print(machine(), flush=True)
    if args.part in ("all", "stream"):
        part1(args)
    if args.part in ("all", "kernel"):
        part2(args)


if __name__ == "__main__":
    main()
