"""Show why a Snakemake run failed: the text of every log file Snakemake names for a failed job.

Snakemake's error block for a failed job ends with a line such as
    log: results/logs/models/x.log, .snakemake/slurm_logs/rule_x/x/12.log (check log file(s) for error details)
(the rule's own `log:` and, with the SLURM executor, SLURM's log of the job). `failure_report`
collects those files' contents so a test's failure message shows the error itself, not just
"returncode 1".
"""

from __future__ import annotations

import re
from pathlib import Path

LOG_LINE = re.compile(r"^\s*log: (.+?)(?: \(check log file\(s\) for error details\))?\s*$", re.M)


def failed_logs(output: str, workdir: Path) -> list[Path]:
    """Log files named in the `log:` lines of Snakemake's error blocks, in order, without repeats."""
    found = []
    for line in LOG_LINE.findall(output):
        for part in line.split(", "):
            path = Path(part.strip())
            path = path if path.is_absolute() else Path(workdir) / path
            if path not in found:
                found.append(path)
    return found


def failure_report(res, workdir: Path, tail: int = 4000) -> str:
    """Snakemake's own stderr tail plus the tail of each failed job's log files."""
    out = (res.stdout or "") + (res.stderr or "")
    parts = [f"snakemake exited {res.returncode}; last output:\n{out[-tail:]}"]
    for path in failed_logs(out, workdir):
        text = path.read_text(errors="replace")[-tail:] if path.is_file() else "(missing)"
        parts.append(f"===== {path}\n{text}")
    return "\n".join(parts)
