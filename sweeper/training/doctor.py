"""`sweeper doctor`: what this machine offers a run (torch and its CUDA build, the driver, each GPU's
capability, what `precision: auto` picks there) and what stands in the way of using it.

Facts are gathered once into plain data; `advice` turns them into lines, so the rules are tested
with the facts of machines we do not have.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from sweeper.training.device import cpu_model, mps_available, usable_cores
from sweeper.training.precision import choose_precision, cpu_has_bf16, native_precisions

# The oldest driver each CUDA major version of the torch wheels runs on (NVIDIA's compatibility tables).
MIN_DRIVER = {13: 580, 12: 525, 11: 450}
WHEELS = "https://download.pytorch.org/whl/"  # + cu126, cu128, cu130, ... or cpu


@dataclass(frozen=True)
class Gpu:
    """One CUDA device as torch sees it."""

    index: int
    name: str
    capability: tuple[int, int]
    memory_gib: float


@dataclass(frozen=True)
class Facts:
    """What `sweeper doctor` reads off the machine."""

    python: str
    torch: str
    cuda_build: str | None  # torch.version.cuda; None for a CPU-only (or ROCm) build
    arch_list: tuple[str, ...]  # the GPU architectures this build has kernels for, e.g. sm_80
    driver: str | None  # the NVIDIA driver's version, None when no driver is found
    cuda_available: bool
    cuda_error: str | None  # why torch cannot use CUDA, when it says
    gpus: tuple[Gpu, ...] = ()
    mps: bool = False
    cpu: str = ""
    cpu_cores: int = 1
    cpu_bf16: bool = False
    visible: str | None = None  # CUDA_VISIBLE_DEVICES
    order: str | None = None  # CUDA_DEVICE_ORDER
    torch_range: str | None = None  # the torch versions this sweeper declares it supports, e.g. ">=2.11"


def supported_torch() -> str | None:
    """The torch range in sweeper's installed package metadata (pyproject.toml's), None when not installed."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("sweeper") or []
    except PackageNotFoundError:
        return None
    for line in declared:
        req = Requirement(line)
        if req.name == "torch" and req.marker is None:
            return str(req.specifier) or None
    return None


def in_range(version: str, spec: str) -> bool | None:
    """Whether a torch version (local labels such as +cu130 ignored) lies in a range; None when unreadable."""
    from packaging.specifiers import SpecifierSet

    try:
        return SpecifierSet(spec).contains(Version(version).public, prereleases=True)
    except InvalidVersion:
        return None


def driver_too_old(driver: str | None, cuda_build: str | None) -> int | None:
    """The driver a CUDA build needs when the installed one is older (None when it is new enough or unknown)."""
    if not driver or not cuda_build:
        return None
    need = MIN_DRIVER.get(int(cuda_build.split(".")[0]))
    major = re.match(r"\d+", driver)
    return need if need and major and int(major.group()) < need else None


def _driver_version() -> str | None:
    """The NVIDIA driver's version from nvidia-smi or /proc, None when there is no driver."""
    proc = Path("/proc/driver/nvidia/version")
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=15,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.split()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    if proc.is_file():
        words = proc.read_text(errors="replace").split()
        return next((w for w in words if w[:1].isdigit() and "." in w), "unknown version")
    return None


def _cuda_error() -> str | None:
    """torch's own reason for not using CUDA (an old driver, no device), when it gives one."""
    try:
        torch.cuda.init()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer we are after
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def gather() -> Facts:
    """Read the facts off this machine (starts CUDA where it works)."""
    available = torch.cuda.is_available()
    gpus = []
    for i in range(torch.cuda.device_count() if available else 0):
        props = torch.cuda.get_device_properties(i)
        gpus.append(Gpu(i, props.name, (props.major, props.minor), props.total_memory / 2**30))
    cores = usable_cores()
    return Facts(
        python=platform.python_version(),
        torch=torch.__version__,
        cuda_build=torch.version.cuda,
        arch_list=tuple(torch.cuda.get_arch_list()) if torch.version.cuda else (),
        driver=_driver_version(),
        cuda_available=available,
        cuda_error=None if available or torch.version.cuda is None else _cuda_error(),
        gpus=tuple(gpus),
        mps=mps_available(),
        cpu=cpu_model(),
        cpu_cores=cores,
        cpu_bf16=cpu_has_bf16(),
        visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
        order=os.environ.get("CUDA_DEVICE_ORDER"),
        torch_range=supported_torch(),
    )


def auto_precision(device_type: str, capability: tuple[int, int] | None = None, cpu_bf16: bool = False) -> str:
    """What `precision: auto` resolves to on a device with these facts."""
    return choose_precision("auto", device_type, native_precisions(device_type, capability, cpu_bf16))


def has_kernels(capability: tuple[int, int], arch_list: tuple[str, ...]) -> bool:
    """Whether a build runs on a GPU: native kernels for its capability, or PTX of an older one to JIT."""
    wanted = capability[0] * 10 + capability[1]

    def number(arch: str) -> int | None:  # sm_90a -> 90, compute_120 -> 120
        digits = re.match(r"\d+", arch.split("_", 1)[-1])
        return int(digits.group()) if digits else None

    cubins = [n for a in arch_list if a.startswith("sm_") and (n := number(a)) is not None]
    ptx = [n for a in arch_list if a.startswith("compute_") and (n := number(a)) is not None]
    # cubins run on later minor versions of the same major; PTX is compiled for any later GPU
    return any(n // 10 == wanted // 10 and n <= wanted for n in cubins) or any(n <= wanted for n in ptx)


def describe(facts: Facts) -> list[str]:
    """The report's plain lines: versions, devices, and what `auto` picks on each."""
    build = f"CUDA {facts.cuda_build} build" if facts.cuda_build else "CPU-only build"
    lines = [
        f"python {facts.python} on {platform.system()} {platform.machine()}",
        f"torch {facts.torch} ({build}{', kernels for ' + ' '.join(facts.arch_list) if facts.arch_list else ''})"
        + (f"; sweeper supports torch{facts.torch_range}" if facts.torch_range else ""),
        f"NVIDIA driver: {facts.driver or 'none found'}",
        f"CUDA usable by torch: {'yes' if facts.cuda_available else 'no'}"
        + (f" ({facts.cuda_error})" if facts.cuda_error else ""),
    ]
    if facts.visible is not None or facts.order is not None:
        lines.append(f"CUDA_VISIBLE_DEVICES={facts.visible}  CUDA_DEVICE_ORDER={facts.order}")
    for g in facts.gpus:
        cap = f"{g.capability[0]}.{g.capability[1]}"
        lines.append(
            f"cuda:{g.index}: {g.name}, compute capability {cap}, {g.memory_gib:.0f} GiB; "
            f"precision auto -> {auto_precision('cuda', g.capability)}"
        )
    if facts.mps:
        lines.append(f"mps: Apple GPU; precision auto -> {auto_precision('mps')}")
    lines.append(
        f"cpu: {facts.cpu}, {facts.cpu_cores} cores for this process, "
        f"{'native bf16' if facts.cpu_bf16 else 'no native bf16'}; precision auto -> {auto_precision('cpu', None, facts.cpu_bf16)}"
    )
    device = "cuda" if facts.gpus else "mps" if facts.mps else "cpu"
    lines.append(f"--device auto -> {device}")
    return lines


def advice(facts: Facts) -> list[str]:
    """Warnings: a driver torch cannot use, a build without kernels for a GPU, emulated bf16."""
    out = []
    if facts.torch_range and in_range(facts.torch, facts.torch_range) is False:
        out.append(
            f"torch {facts.torch} is outside the range this sweeper supports (torch{facts.torch_range}): "
            "install a torch in range for your CUDA (README: 'Installing beside your own torch')."
        )
    need = driver_too_old(facts.driver, facts.cuda_build)
    if facts.driver and need and facts.cuda_available:  # forward compatibility (datacenter GPUs) can still run it
        out.append(
            f"NVIDIA driver {facts.driver} is older than this torch's CUDA {facts.cuda_build} build needs "
            f"({need} or newer); CUDA works here, but update the driver or install a wheel from {WHEELS}cuXYZ."
        )
    if facts.driver and not facts.cuda_available:
        if facts.cuda_build is None:
            why = "this torch is a CPU-only build"
        else:
            why = f"this torch is built for CUDA {facts.cuda_build}" + (
                f", which needs driver {need} or newer (this one is too old)" if need else ""
            )
        out.append(
            f"an NVIDIA driver ({facts.driver}) is installed but torch cannot use CUDA: {why}"
            + (f" ({facts.cuda_error})" if facts.cuda_error else "")
            + f". Install the torch wheel built for your driver's CUDA from {WHEELS}cuXYZ "
            "(README: 'GPUs: installing torch for your CUDA'); until then runs train on the CPU."
        )
    for g in facts.gpus:
        if facts.arch_list and not has_kernels(g.capability, facts.arch_list):
            sm = f"sm_{g.capability[0]}{g.capability[1]}"
            out.append(
                f"cuda:{g.index} ({g.name}, {sm}) has no kernels in this torch build ({' '.join(facts.arch_list)}): "
                f"install a wheel of an older CUDA that still supports {sm} (e.g. {WHEELS}cu126)."
            )
        elif g.capability < (8, 0):
            out.append(
                f"cuda:{g.index} ({g.name}) has no native bf16: precision auto uses fp16 with loss scaling there "
                "(bf16 would be emulated, several times slower)."
            )
    return out
