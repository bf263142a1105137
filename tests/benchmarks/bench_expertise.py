"""Benchmark: vectorised lensflow.expertlens.expertise.average_precision vs a per-unit sklearn loop.

Not a test (pytest does not collect bench_*.py). The sklearn loop is what the anchor code
(apple/ml-selfcond) runs per unit; it is timed on a subset of units and extrapolated per unit
to the full size, and that subset is also used to check that both give the same numbers.

Usage (from the repo root):
    .venv/bin/python tests/benchmarks/bench_expertise.py                 # 2000 x 20000 float32
    .venv/bin/python tests/benchmarks/bench_expertise.py --kind float64  # float64 keys (shorter sort chunks)
    .venv/bin/python tests/benchmarks/bench_expertise.py --kind ties --units 5000
    .venv/bin/python tests/benchmarks/bench_expertise.py --threads 2           # two blocks at once
Prints a Markdown table (header + one row) to paste into tests/benchmarks/RESULTS.md.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflow"))
from lensflow.core.machine import describe, machine_line  # noqa: E402
from lensflow.expertlens.expertise import average_precision  # noqa: E402


def make_responses(n, u, kind, pos_frac, seed):
    """Fake pooled responses [n, u] and labels [n]; a third of the units respond to positives."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=bool)
    labels[: int(round(pos_frac * n))] = True
    shift = np.where(rng.random(u) < 1 / 3, rng.gamma(2.0, 0.5, u), 0.0)  # [u]
    scores = rng.standard_normal((n, u)) + labels[:, None] * shift[None, :]  # [n, u]
    if kind == "float32":
        scores = scores.astype(np.float32)
    elif kind == "ties":  # coarse values: every unit has many tied scores
        scores = np.round(scores * 4).astype(np.float32)
    return scores, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--units", type=int, default=20000)
    ap.add_argument("--loop-units", type=int, default=500, help="units timed with the sklearn loop")
    ap.add_argument("--kind", choices=["float32", "float64", "ties"], default="float32")
    ap.add_argument("--pos-frac", type=float, default=0.5)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1, help="threads of the vectorised side (the loop has 1)")
    ap.add_argument("--repeats", type=int, default=3, help="vectorised timing = best of this many")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(machine_line(describe(with_torch=False)), flush=True)

    scores, labels = make_responses(args.sentences, args.units, args.kind, args.pos_frac, args.seed)
    average_precision(scores[:, :8], labels)  # compile (or load) the numba kernels outside the timing
    # Wall and CPU (process) time: on a shared machine CPU time is the steadier of the two.
    best_wall = best_cpu = np.inf
    for _ in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        vec = average_precision(scores, labels, chunk_size=args.chunk_size, threads=args.threads)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)

    k = min(args.loop_units, args.units)
    w0, c0 = time.perf_counter(), time.process_time()
    ref = np.array([average_precision_score(labels, scores[:, j]) for j in range(k)])
    loop_wall = (time.perf_counter() - w0) / k * args.units  # extrapolated, not measured
    loop_cpu = (time.process_time() - c0) / k * args.units
    diff = float(np.abs(vec[:k] - ref).max())

    print(f"# {args.sentences} sentences x {args.units} units, {args.kind}, {labels.sum()} positives; "
          f"sklearn loop timed on {k} units and extrapolated per unit to all {args.units}")
    print(f"| sentences | units | kind | threads | vectorised wall / CPU (s, best of {args.repeats}) "
          f"| sklearn loop wall / CPU (s, extrapolated) | speedup wall / CPU | max abs diff ({k} units) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.sentences} | {args.units} | {args.kind} | {args.threads} | {best_wall:.2f} / {best_cpu:.2f} "
          f"| {loop_wall:.1f} / {loop_cpu:.1f} | {loop_wall / best_wall:.0f}x / {loop_cpu / best_cpu:.0f}x "
          f"| {diff:.1e} |")

if __name__ == "__main__":
    main()
