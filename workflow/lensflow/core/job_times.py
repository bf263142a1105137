"""Where the time went: every job's wall time, CPU time and peak memory, from Snakemake's benchmark files.

Each rule's `benchmark:` file (results/benchmarks/...) is a TSV Snakemake writes when a job ends:

    s  h:m:s  max_rss  max_vms  max_uss  max_pss  io_in  io_out  mean_load  cpu_time

s: wall seconds; max_*: peak memory in MiB; io_in/io_out: MiB read/written; mean_load: CPU use in
percent of one core; cpu_time: user + system CPU seconds of the job's processes. Memory, I/O and
CPU time are *sampled* (every 0.5 s for a job's first ~15 s, then every 30 s), so CPU time misses
everything after the last sample (a 40-s job reports its first 15 s) and a short memory peak can be
missed; a job that ends before the first sample has "NA" there. Where the job's log (the benchmark's
mirror under the logs folder) holds the line lensflow.core.usage writes as a script exits, its
exact CPU time replaces the sample (cpu_source "rusage") and its peak RSS joins the sampled one.
One row per run of the job (more with `benchmark: repeat(...)`); `--benchmark-extended` adds the
rule's name and the job's wildcards.

`read_benchmark` parses one file, `collect` every file under a folder into one row per job (the rule
found from the benchmark path's pattern), `per_rule` sums them per rule, `markdown` writes both with
the machine (lensflow.core.machine).
"""

from __future__ import annotations

import ast
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .usage import read_usage

COLUMNS = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load", "cpu_time"]
NUMERIC = ["s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load", "cpu_time"]
UNKNOWN_RULE = "(no rule matches)"

JOB_COLUMNS = ["rule", "job", "wall_s", "cpu_s", "cpu_source", "max_rss_mb", "max_uss_mb", "io_in_mb", "io_out_mb",
               "cpu_per_wall", "runs", "finished", "benchmark"]
RULE_COLUMNS = ["rule", "jobs", "wall_s", "wall_share", "wall_max_s", "cpu_s", "cpu_per_wall", "max_rss_mb",
                "memory_sampled_jobs"]


class BenchmarkError(ValueError):
    """A file that is not a Snakemake benchmark TSV; the message names it."""


def parse_hms(text: str) -> float:
    """Seconds of Snakemake's h:m:s column ("0:01:05", "1 day, 2:00:00", "3 days, 0:00:01")."""
    text = str(text).strip()
    days = 0
    m = re.match(r"(-?\d+) days?, (.*)$", text)
    if m:
        days, text = int(m.group(1)), m.group(2)
    h, mi, s = (float(x) for x in text.split(":"))
    return days * 86400 + h * 3600 + mi * 60 + s


def read_benchmark(path: str | Path) -> pd.DataFrame:
    """One benchmark TSV as a DataFrame: the numeric columns as float ("NA" and "-" -> NaN), one row
    per run; the extended format's extra columns (rule_name, wildcards, ...) kept as text."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchmarkError(f"{path}: not a Snakemake benchmark file ({e})") from None
    missing = [c for c in ("s", "h:m:s") if c not in df.columns]
    if missing:
        raise BenchmarkError(f"{path}: not a Snakemake benchmark file: no column(s) {missing}; has {list(df.columns)}")
    for c in NUMERIC:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c].str.strip().replace({"NA": None, "-": None, "": None}), errors="coerce")
        else:
            df[c] = math.nan
    # s is rounded to 0.01 s but always there; h:m:s only to whole seconds (kept for a missing s)
    gone = df["s"].isna()
    if gone.any():
        df.loc[gone, "s"] = df.loc[gone, "h:m:s"].map(parse_hms)
    return df


def pattern_regex(pattern: str) -> re.Pattern:
    """A Snakemake file pattern as a regex: `{name}` matches `.+`, `{name,regex}` its regex (the
    same rule as snakemake.io.regex_from_filepattern, for tests and callers without Snakemake)."""
    out, last, seen = [], 0, set()
    for m in re.finditer(r"\{\s*(\w+)\s*(?:,\s*((?:[^{}]+|\{\d+(?:,\d+)?\})*))?\s*\}", pattern):
        out.append(re.escape(pattern[last:m.start()]))
        name = m.group(1)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>{m.group(2) or '.+'})")
        seen.add(name)
        last = m.end()
    out.append(re.escape(pattern[last:]) + "$")
    return re.compile("".join(out))


def match_rule(path: str, patterns: dict[str, str | re.Pattern]) -> tuple[str, dict]:
    """(rule, wildcards) whose benchmark pattern matches `path` (relative to the working directory).

    patterns: rule -> its Snakemake benchmark pattern ("results/benchmarks/lfp/{model}/{task,a|b}.tsv",
    wildcard constraints embedded as Snakemake embeds them) or a compiled regex. Several rules can share a
    pattern and differ only in wildcard constraints (lfp_rl / lfp_dpo); a path matched by several
    names them all, joined by " or "; one matched by none is UNKNOWN_RULE (a rule since renamed, or
    a file from another workflow)."""
    hits = {}
    for rule, rx in patterns.items():
        m = (rx if isinstance(rx, re.Pattern) else pattern_regex(rx)).match(path)
        if m:
            hits[rule] = m.groupdict()
    if not hits:
        return UNKNOWN_RULE, {}
    rules = sorted(hits)
    return " or ".join(rules), hits[rules[0]]


def _wildcards_text(wildcards: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in wildcards.items())


def _extended(df: pd.DataFrame) -> tuple[str | None, str | None]:
    """(rule, wildcards text) written by --benchmark-extended, else (None, None)."""
    if "rule_name" not in df.columns or not len(df):
        return None, None
    wildcards = None
    if "wildcards" in df.columns:
        try:
            wildcards = _wildcards_text(ast.literal_eval(df["wildcards"].iloc[0]))
        except (ValueError, SyntaxError):
            wildcards = df["wildcards"].iloc[0]
    return df["rule_name"].iloc[0], wildcards


def job_row(df: pd.DataFrame, rule: str, job: str, benchmark: str, finished: float | None = None,
            usage: dict | None = None) -> dict:
    """One job's row from its benchmark rows (several with repeat(): times summed, peaks maxed).
    `usage`: the job's own accounting (lensflow.core.usage), used for a single run only: the log
    holds the last run's line, the benchmark rows every run's."""

    def total(c):
        v = df[c].dropna()
        return float(v.sum()) if len(v) else math.nan

    def peak(c):
        v = df[c].dropna()
        return float(v.max()) if len(v) else math.nan

    wall, cpu, rss, source = float(df["s"].sum()), total("cpu_time"), peak("max_rss"), "sampled"
    if usage is not None and len(df) == 1:
        cpu, source = usage["cpu_s"], "rusage"
        rss = usage["max_rss_mb"] if math.isnan(rss) else max(rss, usage["max_rss_mb"])
    return {
        "rule": rule, "job": job, "wall_s": wall, "cpu_s": cpu, "cpu_source": source,
        "max_rss_mb": rss, "max_uss_mb": peak("max_uss"),
        "io_in_mb": total("io_in"), "io_out_mb": total("io_out"),
        "cpu_per_wall": cpu / wall if wall > 0 and not math.isnan(cpu) else math.nan,
        "runs": len(df),
        "finished": (datetime.fromtimestamp(finished, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                     if finished is not None else None),
        "benchmark": benchmark,
    }


def collect(folder: str | Path, patterns: dict[str, str | re.Pattern], exclude=(), relative_to: str | Path = ".",
            logs: str | Path | None = None) -> pd.DataFrame:
    """Every benchmark TSV under `folder` as one row per job (JOB_COLUMNS), slowest first.

    patterns: rule -> its benchmark pattern relative to `relative_to` (the working directory), as
    for match_rule; used when the file does not name its rule itself (Snakemake's default format).
    job: the job's wildcards ("model=m, task=t"); the file's path under `folder` where no rule
    matches. exclude: paths (relative to `relative_to`) to leave out. finished: the file's mtime
    (Snakemake writes it as the job ends), UTC. A .tsv that is not a benchmark file is left out and
    named in `jobs.attrs["skipped"]` (one "path: why" each), so a stray file cannot stop the table.
    logs: the logs folder the benchmark files mirror (X.tsv under `folder` <-> X.log under `logs`,
    tests/core/test_job_times.py checks every rule): jobs whose log has a usage line get exact CPU time."""
    folder, base = Path(folder), Path(relative_to)
    exclude = {os.path.normpath(e) for e in exclude}
    patterns = {r: p if isinstance(p, re.Pattern) else pattern_regex(p) for r, p in patterns.items()}
    rows, skipped = [], []
    for path in sorted(folder.rglob("*.tsv")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # hidden: temporaries of atomic writes
        rel = os.path.relpath(path, base)
        if rel in exclude:
            continue
        try:
            df = read_benchmark(path)
        except BenchmarkError as e:
            skipped.append(str(e))
            continue
        if not len(df):
            skipped.append(f"{rel}: no row")
            continue
        rule, job = _extended(df)
        if rule is None:
            rule, wildcards = match_rule(rel, patterns)
            job = _wildcards_text(wildcards) if rule != UNKNOWN_RULE else str(path.relative_to(folder))
        usage = read_usage(Path(logs) / path.relative_to(folder).with_suffix(".log")) if logs is not None else None
        rows.append(job_row(df, rule, job or "", rel, path.stat().st_mtime, usage))
    jobs = pd.DataFrame(rows, columns=JOB_COLUMNS)
    jobs = jobs.sort_values(["wall_s", "rule", "job"], ascending=[False, True, True], ignore_index=True)
    jobs.attrs["skipped"] = skipped
    return jobs


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per rule (RULE_COLUMNS), by total wall time, most first: jobs, summed wall and CPU
    seconds, share of all jobs' wall time, the slowest job, CPU/wall, the highest peak RSS.

    Sums skip jobs whose CPU time was not sampled (memory_sampled_jobs counts the others)."""
    if not len(jobs):
        return pd.DataFrame(columns=RULE_COLUMNS)
    g = jobs.groupby("rule", sort=False)
    out = pd.DataFrame({
        "jobs": g.size(),
        "wall_s": g["wall_s"].sum(),
        "wall_max_s": g["wall_s"].max(),
        "cpu_s": g["cpu_s"].sum(min_count=1),
        "max_rss_mb": g["max_rss_mb"].max(),
        "memory_sampled_jobs": g["max_rss_mb"].count(),
    }).reset_index()
    total = jobs["wall_s"].sum()
    out["wall_share"] = out["wall_s"] / total if total > 0 else math.nan
    sampled_wall = jobs[jobs["cpu_s"].notna()].groupby("rule")["wall_s"].sum()
    out["cpu_per_wall"] = out["cpu_s"] / out["rule"].map(sampled_wall)
    out = out.sort_values(["wall_s", "rule"], ascending=[False, True], ignore_index=True)
    return out[RULE_COLUMNS]


def summary(jobs: pd.DataFrame) -> dict:
    """Totals over all jobs: count, summed wall and CPU seconds, and the span from the first job's
    start (its end minus its wall time) to the last job's end, from the files' times: the run's
    elapsed time when they all come from one run (reruns and resumed runs stretch it)."""
    if not len(jobs):
        return {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "span_s": None, "first_start": None, "last_end": None}
    ends = pd.to_datetime(jobs["finished"], utc=True)
    starts = ends - pd.to_timedelta(jobs["wall_s"], unit="s")
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {"jobs": int(len(jobs)), "wall_s": float(jobs["wall_s"].sum()),
            "cpu_s": float(jobs["cpu_s"].sum(min_count=1)) if jobs["cpu_s"].notna().any() else None,
            "span_s": float((ends.max() - starts.min()).total_seconds()),
            "first_start": starts.min().strftime(fmt), "last_end": ends.max().strftime(fmt)}


def hms(seconds: float | None) -> str:
    """Seconds as h:mm:ss (m:ss under an hour); '—' for a missing value."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _num(v, fmt: str) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def markdown(rules: pd.DataFrame, jobs: pd.DataFrame, totals: dict, machine: str, folder: str = "results/benchmarks") -> str:
    """The Markdown page: machine, totals, the per-rule table, then the per-job table."""
    lines = [
        "# Where the time goes: every job's wall time, CPU time and peak memory",
        "",
        f"{machine}",
        "",
        f"From the {totals['jobs']} benchmark files under `{folder}/` (Snakemake's `benchmark:` records: the "
        "jobs run in this results folder, each its latest run; jobs not rerun keep their earlier times). "
        "CPU time: the job's own accounting as it exited (user + system, children included) where its log "
        f"has it ({int((jobs['cpu_source'] == 'rusage').sum())} of {totals['jobs']} jobs); else Snakemake's samples "
        "(every 0.5 s in a job's first ~15 s, then every 30 s: CPU after the last sample is missed). Peak "
        "memory: the larger of the two; '—': the job ended before the first sample.",
        "",
        f"- jobs: {totals['jobs']}; wall time summed over jobs: {hms(totals['wall_s'])} "
        f"({_num(totals['wall_s'], ',.0f')} s); CPU time summed: {hms(totals['cpu_s'])}",
        f"- first job start to last job end: {hms(totals['span_s'])} ({totals['first_start']} to "
        f"{totals['last_end']}; the run's elapsed time only if every job is from one run)",
        *[f"- left out, not a benchmark file: {s}" for s in jobs.attrs.get("skipped", [])],
        "",
        "## Per rule, by total wall time",
        "",
        "| rule | jobs | wall total | share | slowest job | CPU total | CPU / wall | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rules.itertuples(index=False):
        lines.append(f"| {r.rule} | {r.jobs} | {hms(r.wall_s)} | {_num(r.wall_share, '.1%')} | {hms(r.wall_max_s)} | "
                     f"{hms(r.cpu_s)} | {_num(r.cpu_per_wall, '.2f')} | {_num(r.max_rss_mb, ',.0f')} |")
    lines += ["", "## Per job, slowest first", "",
              "| rule | job | wall | CPU | CPU / wall | peak RSS (MiB) | finished (UTC) |",
              "|---|---|---:|---:|---:|---:|---|"]
    for j in jobs.itertuples(index=False):
        lines.append(f"| {j.rule} | {j.job or '—'} | {hms(j.wall_s)} | {hms(j.cpu_s)} | {_num(j.cpu_per_wall, '.2f')} | "
                     f"{_num(j.max_rss_mb, ',.0f')} | {j.finished or '—'} |")
    return "\n".join(lines) + "\n"
