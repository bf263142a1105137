"""A real one-node SLURM cluster on loopback, for tests (facts: ../shared/docs/slurm-local.md).

`ensure_slurm()` installs Debian's `slurmctld slurmd slurm-client munge` when they are missing
(root and apt-get needed; it returns a reason to skip only when apt cannot install them).
`LocalSlurm(folder)` starts munged (own socket), slurmctld and slurmd with a private slurm.conf
in `folder` (free ports, state/spool/logs there, one partition `debug`, one fake GPU), exposes
`env` (SLURM_CONF for clients and jobs) and stops exactly the daemons it started, by PID.

The node declares more memory and CPUs than a CI machine has (SlurmdParameters=config_overrides),
so the repository's SLURM profile, written for paper-scale jobs, can be submitted unchanged:
without cgroups nothing is enforced, and `--jobs` bounds what really runs at once. Finished jobs
stay visible to `scontrol show job` for an hour (MinJobAge), which the tests read, and which
`--slurm-status-command squeue` needs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "sbatch", "squeue", "sinfo"]
NODE_CPUS = 16
NODE_MEM_MB = 131072


def _have_binaries() -> bool:
    return all(shutil.which(b) or Path(b).exists() for b in BINARIES)


def ensure_slurm() -> str | None:
    """Install SLURM + munge from Debian's packages if missing. Returns None when ready, else why not."""
    if _have_binaries():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "SLURM is not installed and this is not root with apt-get (cannot install slurmctld/slurmd/munge)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    upd = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
    inst = subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], capture_output=True, text=True,
                          env=env, timeout=900)
    if inst.returncode != 0 or not _have_binaries():
        return (f"apt-get could not install {' '.join(PACKAGES)} (no access to a Debian mirror?): "
                f"update rc={upd.returncode} {upd.stderr[-500:]!r}; install rc={inst.returncode} "
                f"{inst.stderr[-1000:]!r}")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """munged + slurmctld + slurmd for one test session; use as a context manager."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.folder / "slurm.conf"
        # The jobstep plugin drops SLURM_* from the environment of the `srun` it starts inside a
        # job, SLURM_CONF included; a cluster configured through SLURM_CONF (not /etc/slurm) then
        # needs srun to find its config another way: an srun first in PATH that sets it again.
        self.bin = self.folder / "bin"
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}
        # munged runs as user munge, which cannot enter pytest's root-only temp folders
        self.munge_dir = Path(tempfile.mkdtemp(prefix="lensflow-munge-", dir="/tmp"))

    # --- set-up ---------------------------------------------------------------------------
    def _write_config(self):
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        f = self.folder
        ctld_port = _free_port()
        slurmd_port = _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        self.conf.write_text(f"""\
ClusterName=lensflow-test
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_dir / 'munge.socket'}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={f / 'state'}
SlurmdSpoolDir={f / 'spool'}
SlurmctldPidFile={f / 'slurmctld.pid'}
SlurmdPidFile={f / 'slurmd.pid'}
SlurmctldLogFile={f / 'slurmctld.log'}
SlurmdLogFile={f / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEM_MB} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        self.bin.mkdir(exist_ok=True)
        srun = self.bin / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)
        (self.folder / "gres.conf").write_text(f"AutoDetect=off\nNodeName={self.host} Name=gpu File=/dev/null\n")

    def _start(self, name, cmd, **kw):
        log = open(self.folder / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, **kw)

    def start(self, timeout: float = 60):
        self._write_config()
        shutil.chown(self.munge_dir, "munge", "munge")
        os.chmod(self.munge_dir, 0o755)  # munged wants the socket folder reachable by all
        m = self.munge_dir
        self._start("munged", ["/usr/sbin/munged", "-F", f"--socket={m / 'munge.socket'}",
                               f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                               f"--seed-file={m / 'munged.seed'}"], user="munge", group="munge")
        self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged socket")
        self._start("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._start("slurmd", ["/usr/sbin/slurmd", "-D", "-f", str(self.conf)])
        self._wait(lambda: self.node_state() in ("idle", "idle*"), timeout, "node idle")
        return self

    def node_state(self) -> str:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
        return res.stdout.strip()

    def _wait(self, ready, timeout, what):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"SLURM daemon(s) exited {dead} while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}:\n{self.logs()}")

    # --- tear-down and diagnostics ----------------------------------------------------------
    def logs(self, tail: int = 3000) -> str:
        out = []
        for p in [*self.folder.glob("*.log"), *self.folder.glob("*.out"), self.munge_dir / "munged.log"]:
            if p.is_file():
                out.append(f"--- {p}\n{p.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def stop(self):
        """SIGTERM each daemon this object started (by PID), SIGKILL if it lingers."""
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        shutil.rmtree(self.munge_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
