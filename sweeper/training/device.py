"""Where a run computes: the device (checked before anything is written), the memory format images,
weights and optimizer state use there, host-to-device copies, and CPU threads. Precision lives in
precision.py. No training here; train.py asks.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sweeper.errors import UserError
from sweeper.models import first_conv
from sweeper.schema.config import TrainConfig
from sweeper.vocab import Tag

THREAD_SAMPLE_S = 0.2  # how long `free_cores` watches the machine


def pick_device(name: str = "auto") -> torch.device:
    """'auto' means cuda, then mps, then cpu; anything else must name a device this machine has."""
    pci_bus_order()  # before torch first asks CUDA: library callers get the CLI's numbering too
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(
            f"device '{name}' is not a device torch knows ({exc}); use auto, cpu, cuda, cuda:N or mps."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device '{name}' was asked for, but torch sees no usable CUDA GPU here; `sweeper doctor` says why "
                "(driver, CUDA build); use --device cpu or auto."
            )
        check_cuda_index(device, torch.cuda.device_count())
    elif device.type == "mps" and not mps_available():
        raise UserError(
            f"device '{name}' is Apple's GPU (Metal), which this machine ({platform.system()}) does not have; "
            "use --device cpu, cuda or auto."
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device '{name}': sweeper trains on cpu, cuda or mps, not {device.type}.")
    return device


def mps_available() -> bool:
    """Whether Apple's Metal GPU is there (macOS on Apple silicon)."""
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def check_cuda_index(device: torch.device, count: int) -> None:
    """A UserError when `cuda:N` names a GPU this process cannot see (N counts within CUDA_VISIBLE_DEVICES)."""
    if device.index is not None and device.index >= count:
        mask = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f" (CUDA_VISIBLE_DEVICES={mask})" if mask is not None else ""
        raise UserError(
            f"device 'cuda:{device.index}' asks for GPU {device.index}, but this process sees {count} GPU(s){seen}, "
            f"numbered 0 to {count - 1}; use cuda:0 to cuda:{count - 1}, or --devices to spread workers over them."
        )


def pci_bus_order(environ: dict[str, str] | None = None) -> str:
    """Number GPUs by PCI bus (as nvidia-smi and NVML do) unless the user chose an order; call before CUDA starts.

    CUDA's default order is fastest first: on a mixed machine `cuda:1` here, `--devices 1` in a
    worker and `gpu_1` in MLflow's system metrics would be three different GPUs.
    """
    env = os.environ if environ is None else environ
    return env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")


def synchronize(device: torch.device) -> None:
    """Wait until the device finished the work queued so far (a timer read after it is true); no-op on CPUs."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class GpuFacts:
    """What identifies one CUDA GPU: torch's properties, plus its NVML index where pynvml answers."""

    name: str
    uuid: str | None
    pci_bus_id: str | None  # "0000:3b:00.0"
    capability: tuple[int, int]
    total_memory: int  # bytes
    nvml_index: int | None = None  # MLflow's system metrics call this GPU gpu_<nvml_index>


def gpu_facts(device: torch.device) -> GpuFacts:
    """The facts of a real CUDA device (torch's properties; NVML for the index MLflow's monitor uses)."""
    props = torch.cuda.get_device_properties(device)
    uuid = str(getattr(props, "uuid", "") or "") or None
    pci = None
    if hasattr(props, "pci_bus_id"):
        domain, bus, dev = getattr(props, "pci_domain_id", 0), props.pci_bus_id, getattr(props, "pci_device_id", 0)
        pci = f"{domain:04x}:{bus:02x}:{dev:02x}.0"
    return GpuFacts(props.name, uuid, pci, (props.major, props.minor), props.total_memory, _nvml_index(pci))


def _nvml_index(pci: str | None) -> int | None:
    """NVML's index of the GPU at a PCI bus id (what MLflow's GPU monitor enumerates), None without pynvml."""
    if pci is None:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByPciBusId(pci.encode())))
    except Exception:  # noqa: BLE001 - no NVML (or an old one): the PCI and UUID tags still identify the GPU
        return None


def gpu_tags(facts: GpuFacts, environ: Mapping[str, str]) -> dict[str, str]:
    """The run tags naming a cell's own GPU: its name, UUID, PCI bus id, the mask and order it ran under,
    and which gpu_<i> series of MLflow's system metrics (which lists every GPU of the host) is its."""
    uuid = facts.uuid if facts.uuid is None or facts.uuid.startswith(("GPU-", "MIG-")) else f"GPU-{facts.uuid}"
    tags = {
        Tag.DEVICE_NAME: facts.name,
        Tag.GPU_CAPABILITY: f"{facts.capability[0]}.{facts.capability[1]}",
        Tag.GPU_MASK: environ.get("CUDA_VISIBLE_DEVICES", "(unset: all GPUs)"),
        Tag.GPU_ORDER: environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST"),
    }
    tags |= {Tag.GPU_UUID: uuid} if uuid else {}
    tags |= {Tag.GPU_PCI: facts.pci_bus_id} if facts.pci_bus_id else {}
    return tags | ({Tag.GPU_METRICS: f"gpu_{facts.nvml_index}"} if facts.nvml_index is not None else {})


def usable_cores() -> int:
    """CPU cores this process may use (its affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def non_blocking(device: torch.device) -> bool:
    """Whether a host-to-device copy may be asynchronous: towards CUDA only.

    On MPS an asynchronous copy from pageable host memory can hand the kernel stale data
    (pytorch#189690); to the CPU it is no copy at all.
    """
    return device.type == "cuda"


def input_format(cfg: TrainConfig, device: torch.device) -> torch.memory_format:
    """The memory format images enter the model in (see `to_device`)."""
    return torch.channels_last if cfg.channels_last and device.type != "cpu" else torch.contiguous_format


def to_device(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """Move a model to the device, channels_last if the config says so (the first conv excepted on CPUs)."""
    channels_last = cfg.channels_last and not (device.type == "cpu" and _narrow_conv(model))
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # type: ignore[call-overload]
    if channels_last and device.type == "cpu":
        # oneDNN's bf16 weight gradient for a 3-channel channels_last conv ran many times slower
        # than NCHW (and erratically) on our AVX-512 CPU: NCHW images into an NCHW first conv,
        # channels_last after it.
        conv = first_conv(model) if any(isinstance(m, nn.Conv2d) for m in model.modules()) else None
        if conv is not None:
            conv.weight.data = conv.weight.data.contiguous()
    return model


def _narrow_conv(model: nn.Module) -> bool:
    """Whether a conv after the first takes fewer than 8 channels: channels_last is then unsafe on CPUs.

    oneDNN (torch 2.14.1, seen on an AVX2 EPYC) corrupts memory in the backward of a channels_last
    1x1 stride-2 conv with 3-7 input channels (a ResNet downsample at width 4): a segfault or a
    double free. Such tiny widths only occur in tests and toy runs, so they train NCHW.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return any(c.in_channels < 8 for c in convs[1:])


@torch.no_grad()
def match_param_layouts(optimizer: torch.optim.Optimizer) -> int:
    """Give every optimizer state tensor its parameter's strides; returns how many were re-laid.

    Loaded state keeps the saving device's strides (CPU keeps the first conv NCHW, CUDA and MPS run
    every conv channels_last). Fused CUDA kernels then refuse the step, and the CPU's fused kernel
    walks raw pointers and pairs each moment with the wrong weight, silently.
    """
    moved = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
                    moved += 1
    return moved


def _cpu_busy_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (Linux /proc/stat), None elsewhere."""
    try:
        fields = open("/proc/stat").readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def free_cores(sample_s: float = THREAD_SAMPLE_S) -> float | None:
    """Cores of this process's CPU set that other processes left idle over `sample_s`; None where unknown."""
    cores = usable_cores()
    before, ours_before, tick = _cpu_busy_seconds(), sum(os.times()[:2]), time.monotonic()
    if before is None:
        return None
    time.sleep(sample_s)
    after, ours_after, wall = _cpu_busy_seconds(), sum(os.times()[:2]), time.monotonic() - tick
    others = max(0.0, ((after or before) - before) - (ours_after - ours_before)) / wall
    return max(0.0, cores - others)


def apply_threads(setting: str, device: torch.device) -> int:
    """Set torch's intra-op threads on a CPU device: a number as given, or "auto" = the idle cores (at least 1).

    Two threads that wait on each other at every op, one of them descheduled by a competing
    process, made a busy 2-core machine 6-13x slower than idle (benchmarks/throughput.py --contend);
    with as many threads as idle cores, it is about the lost core's 2x.
    """
    if device.type != "cpu":
        return torch.get_num_threads()
    if setting != "auto":
        torch.set_num_threads(int(setting))
        return int(setting)
    free = free_cores()
    if free is not None:
        torch.set_num_threads(max(1, round(free)))
    return torch.get_num_threads()
