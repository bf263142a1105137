"""Benchmark: peak memory and time of the expertise table, streamed (expertise_store) vs in memory.

Not a test. Builds synthetic per-module expertise tables (n_concepts x units per module, n_modules
modules) and runs, each in a fresh subprocess so ru_maxrss is that path's own peak:
  memory  the previous path: concat every module's table, then pivot to the AP matrix [concepts, units]
  stream  write_expertise (row group per module, counts and locations on the way) + read_ap_matrix
Both give the same AP matrix (checked by a checksum of the sorted matrix).

Usage (from the repo root):
    .venv/bin/python tests/benchmarks/bench_expertise_store.py --concepts 50 --modules 24 --units 4096
Prints a Markdown table to paste into tests/benchmarks/RESULTS.md.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflow"))
from lensflow.core.machine import describe, machine_line  # noqa: E402
from lensflow.expertlens.expertise_store import read_ap_matrix, write_expertise  # noqa: E402


def module_tables(n_concepts, n_modules, n_units, seed=0):
    """One table per module, as lensflow.expertlens.pipeline.iter_expertise yields them."""
    rng = np.random.default_rng(seed)
    concepts = np.repeat([f"concept{c:03d}" for c in range(n_concepts)], n_units)
    units = np.tile(np.arange(n_units), n_concepts)
    for m in range(n_modules):
        n = len(units)
        yield pd.DataFrame({"concept": concepts, "module": f"model.layers.{m}.mlp", "layer": m, "kind": "mlp",
                            "unit": units, "ap": rng.random(n, dtype=np.float32),
                            "off_mean": rng.random(n, dtype=np.float32), "on_p50": rng.random(n, dtype=np.float32),
                            "on_p90": rng.random(n, dtype=np.float32)})


def run(mode, args, out):
    t0 = time.perf_counter()
    tables = module_tables(args.concepts, args.modules, args.units)
    if mode == "memory":
        full = pd.concat(list(tables), ignore_index=True)
        ap = full.pivot_table(index="concept", columns=["module", "unit"], values="ap", sort=True).to_numpy(np.float64)
    else:
        write_expertise(tables, out, {}, np.linspace(0.5, 1, 501), [0.5, 0.6, 0.7, 0.8, 0.9])
        _, ap = read_ap_matrix(out)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_mb": peak_mb, "checksum": float(np.sort(ap, axis=None)
                                                                                              [:: max(1, ap.size // 1000)].sum())}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", type=int, default=50)
    ap.add_argument("--modules", type=int, default=24)
    ap.add_argument("--units", type=int, default=4096)
    ap.add_argument("--mode", choices=["memory", "stream"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        return run(args.mode, args, args.out)
    print(machine_line(describe(with_torch=False)), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("memory", "stream"):
            cmd = [sys.executable, __file__, "--mode", mode, "--out", f"{tmp}/e.parquet", "--concepts",
                   str(args.concepts), "--modules", str(args.modules), "--units", str(args.units)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    assert abs(rows[0]["checksum"] - rows[1]["checksum"]) < 1e-6 * abs(rows[0]["checksum"]), rows
    n_rows = args.concepts * args.modules * args.units
    print("| concepts | modules x units | rows | path | peak RSS (MB) | seconds |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {args.concepts} | {args.modules} x {args.units} | {n_rows:,} | {r['mode']} | {r['peak_mb']:,.0f} | "
              f"{r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
