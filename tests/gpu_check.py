"""The GPU check (issue 12, item 4): on a CUDA machine, rehearse config/paper.yaml with a GPU, check
that every GPU job ran on CUDA, and measure caching and SAE training at paper batch sizes.

    bash tests/gpu_check.sh        # on the GPU machine, from the repository root (installs .whl first)
    python3 tests/gpu_check.py [--out DIR] [--work DIR] [--budget 420] [--cores 8] [--skip-bench]
                               [--skip-rehearsal]

1. Throughput (tests/gpu_bench.py): activation caching over a random pythia-1b-sized model and SAE
   training, straight through the library.
2. The rehearsal (tests/rehearsal/rehearse.py: stand-in hub, fake OpenAI endpoint, paper.yaml +
   overlay.yaml) with `--cores 8 --resources gpu=1 --keep-going`, plus stand-ins for the GloVe and
   MiniLM packages (tests/gpu_standins.py). GPU jobs run one at a time, and the whole DAG (~150 GPU
   jobs) does not fit the budget, so a dry-run picks one job of every rule with gpu>0 and those go
   first (`--prioritize`); at the budget Snakemake is interrupted and what ran is judged.
3. From Snakemake's job blocks (tests/gpu_jobs.py), every job with gpu>0 that finished or failed
   must have a log line `device: cuda` (lensflow.core.runtime.pick_device writes
   `device: cuda (job gpu=1, threads=N)`); one saying cpu, or none, is a problem.

Writes gpu_check.json, gpu_check.md, snakemake.log and (if jobs failed) failures.txt to --out
(default $OUT, else ./gpu_check_out). Exit status: 0 all good; 1 a GPU job whose log says cpu or
has no device line, a failed job or rehearsal, or a benchmark error; 2 only that the budget ended
before some GPU rule had a job judged; 3 no CUDA.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(HERE / "support"), str(HERE / "rehearsal"), str(ROOT / "workflow")]

from gpu_jobs import check_gpu_jobs, covering_targets, parse_jobs  # noqa: E402


@dataclass
class Args:
    out: Path = Path(os.environ.get("OUT") or "gpu_check_out")
    work: Path = Path("/tmp/gpu_check_work")
    budget: float = 420.0  # seconds for everything; tests/gpu_check.sh kills at 480
    cores: int = 8
    skip_bench: bool = False
    skip_rehearsal: bool = False


def parse_args(argv=None) -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Args()
    p.add_argument("--out", type=Path, default=d.out, help="results folder (default $OUT, else ./gpu_check_out)")
    p.add_argument("--work", type=Path, default=d.work, help="the rehearsal's working directory")
    p.add_argument("--budget", type=float, default=d.budget, help="seconds for the whole check")
    p.add_argument("--cores", type=int, default=d.cores, help="Snakemake --cores")
    p.add_argument("--skip-bench", action="store_true", help="no throughput measurements")
    p.add_argument("--skip-rehearsal", action="store_true", help="no rehearsal (throughput only)")
    return Args(**vars(p.parse_args(argv)))


# --- the machine ------------------------------------------------------------------------------------
def _driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        if out:
            return out.splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        return str(pynvml.nvmlSystemGetDriverVersion())
    except Exception:  # no NVML either: say so rather than fail the check
        return "unknown"


def machine() -> dict:
    import platform

    import torch

    props = torch.cuda.get_device_properties(0)
    info = {"gpu": torch.cuda.get_device_name(0), "capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1), "driver": _driver(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "python": platform.python_version(), "cpus": os.cpu_count()}
    for pkg in ("transformers", "snakemake", "trl", "datasets", "spacy", "sentence-transformers"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = None
    return info


# --- the rehearsal ------------------------------------------------------------------------------------
def _run_until(cmd: list[str], env: dict, log: Path, stop_at: float) -> tuple[int, bool]:
    """Run cmd (output to `log`) until it ends or `stop_at` (monotonic); then SIGINT its process group
    (Snakemake stops its jobs), SIGKILL after 30 s. Returns (exit status, whether it was stopped)."""
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=max(1.0, stop_at - time.monotonic())), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                return proc.wait(timeout=30), True
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait(), True


def rehearse(args: Args, stop_at: float) -> dict:
    """The rehearsal with a GPU; returns its summary, the GPU job rows and the problems found."""
    if importlib.util.find_spec("snakemake") is None:
        return {"error": "snakemake is not importable: carry the wheels (tests/gpu_wheels.sh, then .whl)"}
    import fake_openai
    import gpu_standins
    from rehearse import environment, prepare, snakemake_cmd

    t0, res = time.monotonic(), {}
    work, log = args.work.resolve(), args.out / "snakemake.log"
    work.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    flags = ["--cores", str(args.cores), "--resources", "gpu=1", "--keep-going"]
    if importlib.util.find_spec("pulp") is None:  # not carried (16 MB): Snakemake's ILP scheduler needs it
        flags += ["--scheduler", "greedy"]
    with fake_openai.serve() as endpoint:
        overlay = prepare(work, endpoint)
        try:
            res["standins"] = gpu_standins.build(work / "standins")
        except Exception as e:  # the GloVe / MiniLM jobs then fail, and are reported
            res["standins"] = {"error": f"{type(e).__name__}: {e}"}
        env = environment(work)
        env["PYTHONPATH"] = os.pathsep.join([str(work / "standins"), str(ROOT / "workflow"), env.get("PYTHONPATH", "")])
        env["GIT_PYTHON_REFRESH"] = "quiet"  # GitPython is imported by Snakemake; the machine may lack git
        res["setup_s"] = round(time.monotonic() - t0, 1)
        dry = lambda *extra: subprocess.run(snakemake_cmd(work, overlay, *flags, *extra, "-n"), env=env,  # noqa: E731
                                            capture_output=True, text=True, timeout=max(30.0, stop_at - time.monotonic()))
        plan = dry()
        if plan.returncode:
            return {**res, "error": "the dry-run failed:\n" + (plan.stdout + plan.stderr)[-4000:]}
        planned = parse_jobs(plan.stdout + plan.stderr)
        targets = covering_targets(planned)
        first = ["--prioritize", *targets.values()] if targets else []
        if first and (check := dry(*first)).returncode:  # never lose the run to a target it cannot read
            res["prioritize_error"], first = (check.stdout + check.stderr)[-2000:], []
        res.update(planned_jobs=len(planned), first=targets if first else {})
        cmd = snakemake_cmd(work, overlay, *flags, *first)
        rc, stopped = _run_until(cmd, env, log, stop_at)
    text = log.read_text(errors="replace")
    jobs = parse_jobs(text)
    rows = check_gpu_jobs(jobs, work)
    failed = sorted({j.rule for j in jobs.values() if j.status == "failed"})
    gpu_rules = sorted({j.rule for j in planned.values() if j.gpu > 0})
    res.update(rc=rc, stopped_at_budget=stopped, seconds=round(time.monotonic() - t0, 1),
               jobs_finished=sum(j.status == "finished" for j in jobs.values()), failed_rules=failed,
               gpu_rules=gpu_rules, unchecked_gpu_rules=sorted(set(gpu_rules) - {r["rule"] for r in rows}),
               per_rule={r: {"planned": sum(j.rule == r and j.gpu > 0 for j in planned.values()),
                             "judged": sum(x["rule"] == r for x in rows),
                             "cuda": sum(x["rule"] == r and x["device"] == "cuda" for x in rows)} for r in gpu_rules},
               gpu_jobs=rows)
    if failed or (rc and not stopped):
        from failure_logs import failure_report

        proc = subprocess.CompletedProcess(cmd, rc, stdout=text, stderr="")
        (args.out / "failures.txt").write_text(failure_report(proc, work))
    return res


# --- the verdict and the report -----------------------------------------------------------------------
def verdict(result: dict) -> tuple[list[str], list[str], int]:
    """(problems, GPU rules never judged, exit status) of a result."""
    problems = [f"benchmark {e}" for e in (result.get("throughput") or {}).get("errors", [])]
    reh, unchecked = result.get("rehearsal"), []
    if reh and "error" in reh:
        lines = [x for x in reh["error"].splitlines() if x.strip()]
        problems.append("rehearsal: " + " ... ".join(dict.fromkeys([lines[0], lines[-1]])) + " (gpu_check.json)")
    elif reh:
        problems += [f"{r['rule']} job {r['jobid']} {r['wildcards']}: {r['problem']} ({', '.join(r['logs'])})"
                     for r in reh["gpu_jobs"] if r["problem"]]
        problems += [f"jobs of rule {rule} failed (failures.txt)" for rule in reh["failed_rules"]]
        if reh["rc"] and not reh["stopped_at_budget"] and not reh["failed_rules"]:
            problems.append(f"snakemake exited {reh['rc']} (snakemake.log)")
        unchecked = reh["unchecked_gpu_rules"]
    return problems, unchecked, 1 if problems else 2 if unchecked else 0


def _table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# GPU check", "", f"{m['gpu']} (compute capability {m['capability']}, {m['gpu_memory_gib']} GiB), "
             f"driver {m['driver']}; torch {m['torch']} (CUDA {m['torch_cuda']}), transformers {m['transformers']}, "
             f"snakemake {m['snakemake']}; Python {m['python']}, {m['cpus']} CPUs.", "",
             f"**Exit {result['exit']}**: " + ("; ".join(result["problems"]) or "no problem found")
             + (f"; GPU rules not reached within the budget: {', '.join(result['unchecked'])}" if result["unchecked"] else "")]
    reh = result.get("rehearsal")
    if reh and "error" not in reh:
        lines += ["", "## GPU jobs of the rehearsal (paper.yaml + overlay, --resources gpu=1 --keep-going)", "",
                  f"{reh['jobs_finished']} of {reh['planned_jobs']} jobs finished in {reh['seconds']} s (setup "
                  f"{reh['setup_s']} s); " + ("stopped at the budget" if reh["stopped_at_budget"] else f"exit {reh['rc']}")
                  + ". Judged: GPU jobs that finished or failed; their log must say `device: cuda`.", ""]
        lines += _table(["rule", "GPU jobs planned", "judged", "on CUDA"],
                        [[r, v["planned"], v["judged"], v["cuda"]] for r, v in reh["per_rule"].items()])
    tp = result.get("throughput")
    if tp and tp.get("cache"):
        c = tp["cache"]
        lines += ["", "## Activation caching (cache_activations, max-pooled linear outputs, float32 Parquet)", ""]
        lines += _table(["model", "modules", "batch x tokens", "tokens/s", "bare forward tokens/s", "cache/bare",
                         "peak GPU GiB", "Parquet MiB", "precision"],
                        [[c["model"], c["modules"], f"{c['batch_size']} x {c['max_length']}", c["tokens_per_s"],
                          c["bare_forward_tokens_per_s"], c["cache_vs_bare"], c["peak_gpu_gib"], c["parquet_mib"],
                          c["precision"]]])
    if tp and tp.get("sae"):
        lines += ["", "## SAE training (train_sae, tied, random host batches)", ""]
        lines += _table(["d_in", "d_sae", "batch", "examples/s", "steps/s", "one paper SAE (75k examples), s",
                         "peak GPU GiB"],
                        [[s["d_in"], s["d_sae"], s["batch_size"], s["examples_per_s"], s["steps_per_s"],
                          s["paper_sae_seconds"], s["peak_gpu_gib"]] for s in tp["sae"]])
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    result["problems"], result["unchecked"], result["exit"] = verdict(result)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(result))


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; this check needs CUDA torch. Nothing was run.", file=sys.stderr)
        return 3
    if not torch.cuda.is_available():
        print(f"gpu_check: torch.cuda is not available (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}); this check needs a CUDA GPU. Nothing was run.", file=sys.stderr)
        return 3
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "args": vars(args)}
    print(f"gpu_check on {result['machine']['gpu']}, budget {args.budget:.0f} s", flush=True)
    if not args.skip_bench:
        import gpu_bench

        result["throughput"] = gpu_bench.run_all("cuda", log=lambda s: print(s, flush=True))
        write(result, args.out)  # what was measured survives a later kill
    if not args.skip_rehearsal:
        try:
            result["rehearsal"] = rehearse(args, stop_at=start + args.budget - 45)
        except Exception as e:  # reported, with the benchmarks, rather than lost
            import traceback

            result["rehearsal"] = {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"}
    write(result, args.out)
    print(markdown(result), flush=True)
    return result["exit"]


if __name__ == "__main__":
    sys.exit(main())
