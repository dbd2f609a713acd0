"""Where and in what precision a run computes: the device, autocast (bf16, or fp16 with a gradient
scaler) and the memory format images and weights use there. No training here; train.py asks.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext

import torch
from torch import nn

from sweeper.errors import UserError
from sweeper.models import first_conv
from sweeper.schema.config import TrainConfig

THREAD_SAMPLE_S = 0.2  # how long `free_cores` watches the machine


def pick_device(name: str = "auto") -> torch.device:
    """'auto' means cuda, then mps, then cpu; anything else is passed to torch.device."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise UserError(
                f"device '{name}' is not a device torch knows ({exc}); use auto, cpu, cuda or cuda:N."
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(
                f"device '{name}' was asked for, but torch sees no CUDA GPU here; use --device cpu or auto."
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is slower."""
    probe = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(native()) if native is not None else probe in ("AVX512", "AMX")


def choose_precision(requested: str, device_type: str, *, cuda_bf16: bool = False, cpu_bf16: bool = False) -> str:
    """The rule behind pick_precision, from plain facts: 'auto' -> bf16 if native, fp16 on GPUs without it, else fp32."""
    if requested != "auto":
        return requested
    if device_type == "cuda":
        return "bf16" if cuda_bf16 else "fp16"
    return "bf16" if device_type == "cpu" and cpu_bf16 else "fp32"


def pick_precision(requested: str, device: torch.device) -> str:
    """Resolve 'auto' to bf16 where the hardware does it natively, fp16 on older GPUs, else fp32."""
    if requested != "auto":
        return requested
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    cpu_bf16 = device.type == "cpu" and cpu_has_bf16()
    return choose_precision(requested, device.type, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16)


def needs_grad_scaler(precision: str) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and does not."""
    return precision == "fp16"


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision ('fp32' gives none)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
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
