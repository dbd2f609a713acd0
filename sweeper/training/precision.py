"""What numbers a run computes with, decided once and kept: precision, TF32, determinism, and the RNGs.

A run resolves `precision: auto` on its first start; the checkpoint stores what it resolved and
on which device type, so a resume computes as the run began (or converts, and says so). The TF32
policy and cuDNN's algorithm choice are set for the length of a run and restored afterwards.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from sweeper.schema.config import TrainConfig

# Compute capability from which NVIDIA GPUs do bf16 (and TF32) in hardware: Ampere. Older ones
# (T4, V100) emulate bf16 slowly, and `torch.cuda.is_bf16_supported()` counts that emulation.
NATIVE_BF16_CAPABILITY = (8, 0)


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is slower."""
    probe = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(native()) if native is not None else probe in ("AVX512", "AMX")


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """The (major, minor) compute capability of a CUDA device."""
    return torch.cuda.get_device_capability(device)


def native_precisions(device_type: str, capability: tuple[int, int] | None = None, cpu_bf16: bool = False) -> set[str]:
    """The precisions a device type runs at full speed: fp32 everywhere, bf16/tf32 on Ampere+ and bf16 CPUs."""
    if device_type == "cuda":
        ampere = capability is not None and capability >= NATIVE_BF16_CAPABILITY
        return {"fp32", "fp16"} | ({"bf16", "tf32"} if ampere else set())
    if device_type == "cpu":
        return {"fp32", "bf16"} if cpu_bf16 else {"fp32"}
    return {"fp32", "fp16"} if device_type == "mps" else {"fp32"}


def device_precisions(device: torch.device) -> set[str]:
    """`native_precisions` of a real device (asks the GPU or the CPU)."""
    capability = cuda_capability(device) if device.type == "cuda" else None
    return native_precisions(device.type, capability, cpu_bf16=device.type == "cpu" and cpu_has_bf16())


def choose_precision(requested: str, device_type: str, native: set[str]) -> str:
    """The rule from plain facts: 'auto' -> bf16 where native, fp16 on GPUs without it, else fp32."""
    if requested != "auto":
        return requested
    if "bf16" in native:
        return "bf16"
    return "fp16" if device_type == "cuda" else "fp32"


def pick_precision(requested: str, device: torch.device) -> str:
    """Resolve 'auto' for a real device: bf16 where the hardware does it natively, fp16 on older GPUs, else fp32."""
    return choose_precision(requested, device.type, device_precisions(device) if requested == "auto" else set())


@dataclass(frozen=True)
class Resolved:
    """The precision a (possibly resumed) run computes in, and a note when a resume had to change it."""

    precision: str
    converted: str | None = None  # e.g. "bf16 -> fp16: resumed on cuda, which has no native bf16"


def resolve_precision(
    requested: str, device_type: str, native: set[str], stored: str | None = None, stored_device: str | None = None
) -> Resolved:
    """The precision of a run: `requested`, or for 'auto' what the checkpoint stored, kept where it is native here.

    Re-resolving 'auto' on every resume let a run switch between fp32, bf16 and fp16 halfway. A
    stored precision that this device cannot run natively is converted to what 'auto' picks here.
    """
    if requested != "auto" or stored is None:
        return Resolved(choose_precision(requested, device_type, native))
    if stored in native:
        return Resolved(stored)
    now = choose_precision("auto", device_type, native)
    return Resolved(
        now,
        f"{stored} -> {now}: resumed on {device_type} (was {stored_device or 'unknown'}), where {stored} is not native",
    )


def resolve_for(requested: str, device: torch.device, state: Any = None) -> Resolved:
    """`resolve_precision` for a real device and an optional checkpoint (`precision`, `device_type` keys)."""
    state = state or {}
    return resolve_precision(
        requested, device.type, device_precisions(device), state.get("precision"), state.get("device_type")
    )


def needs_grad_scaler(precision: str) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and does not."""
    return precision == "fp16"


FP16_MAX = 65504.0
DEFAULT_SCALE = 2.0**16  # GradScaler's own initial scale


def initial_scale(summed: bool, batch_size: int, classes: int = 10) -> float:
    """GradScaler's first scale: torch's 2^16 for a mean loss; for a summed one, the largest power of two at
    which the first loss (about ln(classes) per image) stays finite in fp16 with 2x headroom.

    A summed loss is `batch_size` times a mean one: at batch 2,000 it starts near 4,600, so 2^16 made
    the first scaled losses and gradients inf and the scaler skipped the first steps (at peak lr in
    a short schedule) while halving its way down. The scaler still grows the scale as training goes.
    """
    if not summed:
        return DEFAULT_SCALE
    first_loss = math.log(classes) * batch_size
    return min(DEFAULT_SCALE, 2.0 ** math.floor(math.log2(FP16_MAX / (2 * first_loss))))


def grad_scaler(cfg: TrainConfig, device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The run's gradient scaler: enabled for fp16 only, its first scale fitted to the loss's size."""
    summed = getattr(cfg.loss, "reduction", "mean") == "sum"
    return torch.amp.GradScaler(
        device.type, init_scale=initial_scale(summed, cfg.data.batch_size), enabled=needs_grad_scaler(precision)
    )


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision (fp32 and tf32 give none)."""
    if precision in ("fp32", "tf32"):
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def tf32_applies(precision: str, device_type: str, capability: tuple[int, int] | None) -> bool:
    """The rule from plain facts: TF32 runs only when asked for (`tf32`) on a CUDA GPU that has it (Ampere, 8.0+).

    On a T4 or V100 torch accepts the flag and computes IEEE fp32: a tag saying `on` there would lie.
    """
    return (
        precision == "tf32"
        and device_type == "cuda"
        and capability is not None
        and capability >= NATIVE_BF16_CAPABILITY
    )


def tf32_enabled(precision: str, device: torch.device) -> bool:
    """`tf32_applies` for a real device (asks the GPU its compute capability)."""
    if precision != "tf32" or device.type != "cuda":
        return False
    return tf32_applies(precision, device.type, cuda_capability(device))


@contextmanager
def numerics(precision: str, device: torch.device, deterministic: bool) -> Iterator[None]:
    """For one run: the TF32 policy (`fp32` means IEEE fp32: Ampere+ would use TF32 by default) and
    deterministic algorithms or cuDNN autotuning; the process's previous settings come back afterwards."""
    # The legacy flags, not the per-operator `fp32_precision` API: mixing the two makes torch refuse
    # to answer `allow_tf32` (which torch.compile and libraries read), and these are read by all.
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
    )
    tf32 = tf32_enabled(precision, device)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = not deterministic  # the fastest kernels, found once per shape
    torch.backends.cudnn.deterministic = deterministic
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS is deterministic only with it
    torch.use_deterministic_algorithms(deterministic)
    try:
        yield
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
            enabled,
        ) = saved
        torch.use_deterministic_algorithms(enabled)


# --- random number generators ----------------------------------------------------------------


def device_rng_state(device: torch.device) -> torch.Tensor | None:
    """The accelerator's generator state (dropout masks on CUDA/MPS come from it), None on the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return None


def set_device_rng_state(device: torch.device, state: torch.Tensor | None) -> None:
    """Restore what `device_rng_state` returned (a CPU tensor) onto the same device type."""
    if state is None:
        return
    if device.type == "cuda":
        torch.cuda.set_rng_state(state.cpu(), device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state.cpu())
