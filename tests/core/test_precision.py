"""Forward precision chosen by the hardware (issue 13, item 1): `activations.bf16_autocast: auto`.

`auto` means bf16 autocast only where bf16 is native: a CUDA device with native bf16 (compute
capability >= 8, `torch.cuda.is_bf16_supported(including_emulation=False)`) or a CPU whose flags
include avx512_bf16 or amx_bf16; everything else runs fp32 (an AVX2-only CPU emulates bf16 and runs
~6x slower). `true` / `false` force it. The capability probes are mocked both ways here.
"""

from __future__ import annotations

import pytest
import torch

from lensflow.core import runtime
from lensflow.core.runtime import resolve_bf16_autocast

AVX2_ONLY = {"fpu", "sse2", "avx", "avx2", "fma"}
AVX512_NO_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_vnni"}


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU reports these /proc/cpuinfo flags."""
    def set_flags(flags):
        monkeypatch.setattr(runtime, "cpu_flags", lambda *a, **k: set(flags))
    return set_flags


@pytest.fixture
def cuda_with(monkeypatch):
    """Pretend a CUDA device is present whose native bf16 support is `native`."""
    def set_support(native, name="Fake GPU"):
        calls = []

        def is_bf16_supported(including_emulation=True):
            calls.append(including_emulation)
            return native or including_emulation  # emulation "works" everywhere, as on a T4 / V100
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
        return calls
    return set_support


@pytest.mark.parametrize("flags", [AVX2_ONLY, AVX512_NO_BF16, set()])
def test_auto_is_fp32_on_a_cpu_without_native_bf16(cpu_with, flags):
    cpu_with(flags)
    p = resolve_bf16_autocast("auto", "cpu")
    assert p.bf16_autocast is False
    assert p.reason.startswith("auto: cpu") and "without avx512_bf16/amx_bf16" in p.reason
    assert p.reason.endswith("-> fp32")
    assert p.meta() == {"bf16_autocast": False, "bf16_autocast_setting": "auto", "bf16_autocast_reason": p.reason}


@pytest.mark.parametrize("flags,named", [
    (AVX512_NO_BF16 | {"avx512_bf16"}, "avx512_bf16"),  # Cooper Lake, Zen 4/5
    (AVX512_NO_BF16 | {"amx_bf16", "amx_tile", "amx_int8"}, "amx_bf16"),  # Sapphire Rapids and later
])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(cpu_with, flags, named):
    cpu_with(flags)
    p = resolve_bf16_autocast("auto", torch.device("cpu"))
    assert p.bf16_autocast is True
    assert p.reason.startswith("auto: cpu") and f"with {named}" in p.reason and p.reason.endswith("-> bf16")


def test_auto_on_cuda_follows_native_support_not_emulation(cuda_with, cpu_with):
    cpu_with(AVX512_NO_BF16 | {"avx512_bf16"})  # the host CPU does not matter for a CUDA job
    calls = cuda_with(True, "NVIDIA A100")
    p = resolve_bf16_autocast("auto", "cuda")
    assert p.bf16_autocast is True and "cuda" in p.reason and "NVIDIA A100" in p.reason and p.reason.endswith("-> bf16")
    assert calls and not any(calls)  # asked for native support only
    cuda_with(False, "Tesla T4")  # bf16 only emulated (compute capability 7.5)
    p = resolve_bf16_autocast("auto", torch.device("cuda", 0))
    assert p.bf16_autocast is False and "Tesla T4" in p.reason and "without native bf16" in p.reason
    assert p.reason.endswith("-> fp32")


def test_cpu_flags_do_not_matter_on_cuda(cuda_with, cpu_with):
    cpu_with(AVX2_ONLY)
    cuda_with(True)
    assert resolve_bf16_autocast("auto", "cuda").bf16_autocast is True


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("native", [True, False])
def test_true_and_false_force_it(cpu_with, cuda_with, device, native):
    cpu_with(AVX512_NO_BF16 | ({"avx512_bf16"} if native else set()))
    cuda_with(native)
    on, off = resolve_bf16_autocast(True, device), resolve_bf16_autocast(False, device)
    assert on.bf16_autocast is True and on.reason.startswith("true: forced") and "-> bf16" in on.reason
    assert off.bf16_autocast is False and off.reason.startswith("false: forced") and off.reason.endswith("-> fp32")
    assert on.meta()["bf16_autocast_setting"] is True and off.meta()["bf16_autocast_setting"] is False
    assert ("not native" in on.reason) is (not native)  # forcing emulated bf16 is said to be slow


def test_other_devices_run_fp32_under_auto():
    p = resolve_bf16_autocast("auto", "mps")
    assert p.bf16_autocast is False and p.reason.startswith("auto: mps") and p.reason.endswith("-> fp32")


@pytest.mark.parametrize("bad", ["yes", "AUTO", "true", 1, None])
def test_other_settings_are_an_error_naming_the_key(bad):
    with pytest.raises(ValueError, match="bf16_autocast"):
        resolve_bf16_autocast(bad, "cpu")


def test_cpu_flags_read_from_proc_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert runtime.cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"}
    assert runtime.cpu_model(info) == "Some CPU"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\nCPU implementer\t: 0x41\n")
    assert runtime.cpu_flags(arm) == {"fp", "asimd", "bf16", "i8mm"}


def test_cpu_flags_fall_back_to_torch_without_proc_cpuinfo(tmp_path, monkeypatch):
    """No /proc/cpuinfo (macOS, Windows): torch's own cpuinfo probe answers."""
    caps = {"avx2": True, "avx512_bf16": True, "amx_bf16": False, "architecture": "x86_64"}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    assert runtime.cpu_flags(tmp_path / "missing") == {"avx2", "avx512_bf16"}


def test_auto_on_this_machine_matches_its_flags():
    flags = runtime.cpu_flags()
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    p = resolve_bf16_autocast("auto", "cpu")
    assert p.bf16_autocast is native
    assert runtime.cpu_model() in p.reason  # the log names the CPU the decision was made on
