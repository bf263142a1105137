"""A job's own CPU time and peak memory, from the kernel's accounting as its process exits.

Snakemake's benchmark files *sample* a job's processes: every 0.5 s for its first ~15 s (30 ticks),
then every 30 s. The CPU time written is the last sample's, so a 40-second job reports only its
first 15 s of CPU and a 100-second job misses up to 30 s (issue 13's per-job table showed many jobs
at exactly 0:15). The kernel counts exactly: `setup_logging` (lensflow.core.runtime) calls
`log_usage_at_exit`, which appends one line to the job's log as the script ends,

    job usage: cpu_s=41.27 max_rss_mb=1203.5

(user + system seconds of the process and of its waited-for children; the larger peak resident set
of the two), and lensflow.core.job_times reads it back with `read_usage`.
"""

from __future__ import annotations

import atexit
import re
import resource
import sys
from datetime import datetime
from pathlib import Path

PREFIX = "job usage:"
_LINE = re.compile(re.escape(PREFIX) + r" cpu_s=([0-9.]+) max_rss_mb=([0-9.]+)")
_registered = False
_log_path: str | Path | None = None


def usage() -> dict:
    """This process's CPU seconds (user + system, waited-for children included) and peak RSS in MiB."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    per_mib = 2**20 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            "max_rss_mb": max(me.ru_maxrss, kids.ru_maxrss) / per_mib}


def _write_usage() -> None:
    if _log_path is None:
        return
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]  # the log's own timestamp format
    u = usage()
    try:
        with open(_log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} INFO {PREFIX} cpu_s={u['cpu_s']:.2f} max_rss_mb={u['max_rss_mb']:.1f}\n")
    except OSError:  # the log's folder is gone (a test's temporary one): nothing to record into
        pass


def log_usage_at_exit(log_path: str | Path | None) -> None:
    """Append the usage line to `log_path` (the latest one given) when the interpreter exits. Written
    to the file itself, not through logging: at exit a stream handler may already be closed."""
    global _registered, _log_path
    _log_path = log_path
    if not _registered:
        atexit.register(_write_usage)
        _registered = True


def read_usage(log_path: str | Path) -> dict | None:
    """{"cpu_s", "max_rss_mb"} from the last usage line of a job's log; None without log or line."""
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = _LINE.findall(text)
    return {"cpu_s": float(found[-1][0]), "max_rss_mb": float(found[-1][1])} if found else None
