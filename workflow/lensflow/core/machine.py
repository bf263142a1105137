"""The machine a timing was taken on, so that timings can be compared and reproduced.

`describe()` returns a dict (CPU model, the instruction sets that decide how fast models run on the
CPU: AVX2, AVX-512, AVX512-BF16, AMX; cores; memory; torch and its CUDA device, if any);
`machine_line()` the same as one line, which every benchmark script prints first and the job-times
table (lensflow.core.job_times) states with its numbers.

Nothing here needs torch: without it the torch fields are None; `describe(with_torch=False)` does not
import it (benchmarks of numpy code, whose threading it could change), and the line says so.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys

# x86 /proc/cpuinfo flags that matter for model speed on the CPU, with the names used in reports.
X86_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX512-BF16",
    "amx_bf16": "AMX-BF16",
    "amx_tile": "AMX",
}


NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # AVX512-BF16 (Cooper Lake, Zen 4+); AMX (Sapphire Rapids+)


def parse_cpuinfo(text: str) -> dict:
    """CPU model, flags and physical core count from the text of /proc/cpuinfo (x86 or ARM).

    model: x86 "model name"; ARM has none, so "Hardware" / "Model", else None.
    flags: x86 "flags", ARM "Features" (of the first processor; they are the same on every core).
    family: x86 "cpu family" and numeric "model" ("family 25 model 17"), which name the generation
    where a VM reports only "AMD EPYC"; None on ARM.
    physical_cores: distinct (physical id, core id) pairs, None where the file has no such lines (VMs,
    ARM)."""
    model = flags = fam = num = None
    cores = set()
    phys = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "cpu family" and fam is None:
            fam = value
        elif key == "model" and value.isdigit():
            num = value if num is None else num
        elif key in ("hardware", "model") and model is None:
            model = value  # ARM boards
        elif key in ("flags", "features") and flags is None:
            flags = set(value.split())
        elif key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    family = f"family {fam} model {num}" if fam is not None and num is not None else None
    return {"model": model, "family": family, "flags": flags or set(), "physical_cores": len(cores) or None}


def cpu_features(flags: set[str], arch: str) -> dict:
    """The instruction sets that decide CPU speed of models, as booleans (None: not knowable).

    bf16_native: the CPU computes in bfloat16 itself (x86: AVX512-BF16 or AMX; ARM: the BF16
    extension); without it bf16 autocast is emulated and slower than float32."""
    arch = arch.lower()
    if arch in ("x86_64", "amd64", "i386", "i686"):
        if not flags:
            return {"avx2": None, "avx512": None, "avx512_bf16": None, "amx": None, "bf16_native": None}
        amx = "amx_bf16" in flags or "amx_tile" in flags
        return {"avx2": "avx2" in flags, "avx512": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
                "amx": amx, "bf16_native": any(f in flags for f in NATIVE_BF16_CPU_FLAGS)}
    if arch in ("aarch64", "arm64"):
        bf16 = ("bf16" in flags) if flags else None
        return {"avx2": False, "avx512": False, "avx512_bf16": False, "amx": False, "bf16_native": bf16}
    return {"avx2": None, "avx512": None, "avx512_bf16": None, "amx": None, "bf16_native": None}


def read_file(path: str) -> str | None:
    """The text of a small system file (/proc, /sys), None where it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpu_quota(cpu_max: str | None) -> float | None:
    """Cores allowed by a cgroup v2 `cpu.max` ("<quota> <period>", "max <period>": unlimited)."""
    if not cpu_max:
        return None
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return int(parts[0]) / int(parts[1])
    except ValueError:
        return None


def _mem_gib(meminfo: str | None) -> float | None:
    for line in (meminfo or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def _mac_cpu_model() -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def torch_info() -> dict:
    """torch version, its CPU kernel level (ATen CPU capability: DEFAULT / AVX2 / AVX512 ...) and
    CUDA device(s); all None without torch. Imports torch only if it is installed."""
    info = {"torch": None, "torch_cpu_capability": None, "cuda": None, "gpus": [], "gpu_bf16": None}
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return info
    import torch

    info["torch"] = torch.__version__
    try:
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        pass
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        try:  # native bf16 (compute capability >= 8), not the emulation is_bf16_supported() also accepts
            info["gpu_bf16"] = bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:
            info["gpu_bf16"] = bool(torch.cuda.is_bf16_supported())
    return info


def describe(cpuinfo_path: str = "/proc/cpuinfo", with_torch: bool = True) -> dict:
    """What this machine is, for a timing: a flat, JSON-able dict (see machine_line for the fields)."""
    arch = platform.machine()
    cpu = parse_cpuinfo(read_file(cpuinfo_path) or "")
    model = cpu["model"] or (_mac_cpu_model() if sys.platform == "darwin" else None) or platform.processor() or None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    desc = {
        "cpu_model": model,
        "cpu_family": cpu["family"],
        "arch": arch,
        **cpu_features(cpu["flags"], arch),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "physical_cores": cpu["physical_cores"],
        "cpu_quota": _cpu_quota(read_file("/sys/fs/cgroup/cpu.max")),
        "memory_gib": _mem_gib(read_file("/proc/meminfo")),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    desc.update(torch_info() if with_torch else {"torch": "not checked", "torch_cpu_capability": None, "cuda": None,
                                                  "gpus": [], "gpu_bf16": None})
    return desc


def _yn(v) -> str:
    return "?" if v is None else ("yes" if v else "no")


def machine_line(desc: dict | None = None) -> str:
    """One line naming the machine: CPU model and architecture, cores (usable / cgroup quota),
    memory; AVX2, AVX-512, AVX512-BF16, AMX; torch and its CPU kernel level; CUDA GPU(s)."""
    d = describe() if desc is None else desc
    cores = f"{d['logical_cores']} logical cores"
    if d.get("physical_cores"):
        cores += f" ({d['physical_cores']} physical)"
    if d.get("usable_cores") is not None and d["usable_cores"] != d["logical_cores"]:
        cores += f", {d['usable_cores']} usable"
    if d.get("cpu_quota"):
        cores += f", cgroup quota {d['cpu_quota']:g}"
    mem = f", {d['memory_gib']:g} GiB" if d.get("memory_gib") else ""
    flags = (f"AVX2 {_yn(d['avx2'])}, AVX-512 {_yn(d['avx512'])}, AVX512-BF16 {_yn(d['avx512_bf16'])}, "
             f"AMX {_yn(d['amx'])}")
    torch = "no torch"
    if d.get("torch") == "not checked":
        torch = "torch not checked (not loaded), GPU not checked"
    elif d.get("torch"):
        torch = f"torch {d['torch']}"
        if d.get("torch_cpu_capability"):
            torch += f" (CPU kernels {d['torch_cpu_capability']})"
    gpu = "CUDA: none"
    if d.get("torch") == "not checked":
        return f"machine: {_cpu(d)}, {d['arch']}, {cores}{mem}; {flags}; {torch}"
    if d.get("gpus"):
        gpu = f"CUDA {d['cuda']}: {', '.join(d['gpus'])} (native bf16 {_yn(d.get('gpu_bf16'))})"
    return f"machine: {_cpu(d)}, {d['arch']}, {cores}{mem}; {flags}; {torch}; {gpu}"


def _cpu(d: dict) -> str:
    cpu = d["cpu_model"] or "unknown CPU"
    return f"{cpu} ({d['cpu_family']})" if d.get("cpu_family") else cpu


if __name__ == "__main__":
    print(machine_line())
