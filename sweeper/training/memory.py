"""A cell's peak training memory on a GPU, estimated on the CPU before anything runs, and the checks that use it.

The network is built on the meta device (shapes only) and one training batch goes forward there
under a saved-tensors hook that records every tensor autograd keeps for the backward pass: those
activations, the weights and their gradients, the optimizer's state, an EMA copy and the training
set (uint8 images stay on the device) make the estimate. Under bf16/fp16 autocast the saved
activations are half-size and each conv/linear weight gets a half copy. What it leaves out:
cuDNN's workspaces, the allocator's rounding and fragmentation, and the CUDA context (a few
hundred MB outside torch's count), so `fits` keeps a margin.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import torch
from torch import nn

from sweeper.errors import warn
from sweeper.schema.config import TrainConfig
from sweeper.training.train import build_model

GiB = 1024**3
CUDA_CONTEXT_BYTES = 512 * 1024**2  # the CUDA context and cuDNN/cuBLAS handles: outside torch's allocator
MARGIN = 1.1  # allocator rounding and fragmentation over the tensors' own bytes
CIFAR_BYTES = (60_000) * 3 * 32 * 32  # every split as uint8, on the device
# Optimizer state, in fp32 copies of the parameters, with momentum (the user's own optimizer: Adam's two).
STATE_COPIES = {"sgd": 1, "adam": 2, "adamw": 2, "rmsprop": 1, "muon": 1}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a cell's training holds at its peak, by what holds them."""

    weights: int  # parameters and buffers (fp32), with their gradients
    optimizer: int  # optimizer state and the EMA's copy
    activations: int  # what autograd saves for backward at the training batch
    data: int  # the training set kept on the device

    @property
    def total(self) -> int:
        """The estimated peak of torch's allocator, margin included (the CUDA context excluded)."""
        return int((self.weights + self.optimizer + self.activations + self.data) * MARGIN)

    def gib(self) -> str:
        """The total as people read it: '3.2 GiB'."""
        return f"{self.total / GiB:.2g} GiB" if self.total >= GiB / 10 else f"{self.total / 1024**2:.0f} MiB"


def estimate(config: TrainConfig) -> MemoryEstimate | None:
    """The peak training memory of a config's cell at its batch size and precision; None when the network
    does not run on the meta device (some user models do not)."""
    half = config.precision in ("bf16", "fp16", "auto")  # auto is bf16 or fp16 on every GPU
    state = _state_copies(config) + (1 if config.ema_decay > 0 else 0)
    try:
        params, buffers, saved = _network_bytes(
            config.model.model_dump_json(), config.activation, config.data.batch_size, half
        )
    except Exception:  # noqa: BLE001 - an estimate, not a check: a model that will not run on meta gets none
        return None
    train = config.data.train_size if config.data.train_size is not None else 50_000
    data = min(CIFAR_BYTES, (train + config.data.val_size + (config.data.test_size or 10_000)) * 3 * 32 * 32)
    return MemoryEstimate(2 * params + buffers, state * params, saved, data)


def _state_copies(config: TrainConfig) -> int:
    """Copies of the parameters the optimizer keeps: SGD's momentum, Adam's two moments, RMSprop's square average
    (and its momentum)."""
    name, momentum = config.optimizer.name, getattr(config.optimizer, "momentum", 0) or 0
    if name == "sgd":
        return 1 if momentum else 0
    if name == "rmsprop":
        return 2 if momentum else 1
    return STATE_COPIES.get(name, 2)


@functools.cache
def _network_bytes(model_json: str, activation: str, batch: int, half: bool) -> tuple[int, int, int]:
    """(parameter bytes, buffer bytes, saved-for-backward bytes) of one training batch, on meta."""
    config = TrainConfig.model_validate({"model": json.loads(model_json), "activation": activation, "epochs": 1})
    with torch.device("meta"):
        model = build_model(config)
    model.train()
    params = {id(p): p for p in model.parameters()}
    seen: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        if id(base) not in params:
            seen.setdefault(id(base), base)  # held here so that ids stay unique
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.empty(batch, 3, 32, 32, device="meta"))
    saved = sum(_bytes(t, half) for t in seen.values())
    weights = sum(p.numel() for p in model.parameters())
    casts = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))) if half else 0
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    return weights * 4, buffer_bytes, saved + 2 * casts


def _bytes(t: torch.Tensor, half: bool) -> int:
    """A saved tensor's bytes on the GPU: floats at the autocast width, integers (indices, masks) as they are."""
    size = 2 if half and t.is_floating_point() else t.element_size()
    return t.numel() * size


def fits(estimate_bytes: int, total_memory: int) -> bool:
    """Whether a cell's estimated peak (plus the CUDA context) fits a GPU's memory."""
    return estimate_bytes + CUDA_CONTEXT_BYTES <= total_memory


def too_big_warning(name: str, est: MemoryEstimate, gpu: str, total_memory: int) -> str | None:
    """The warning printed before a run whose cell would not fit this GPU, or None when it fits."""
    if fits(est.total, total_memory):
        return None
    return (
        f"{name}: estimated peak training memory {est.gib()} (activations {est.activations / GiB:.2g} GiB at its "
        f"batch size) plus the CUDA context exceeds {gpu}'s {total_memory / GiB:.3g} GiB; it will likely run out of "
        "memory: lower data.batch_size, or use precision bf16/fp16."
    )


# --- on a GPU: what cells of this process measured, and whether the next one fits -------------

_MEASURED: dict[str, int] = {}  # memory key -> peak bytes torch reserved over a cell's first epoch, this process


def memory_key(config: TrainConfig) -> str:
    """What decides a cell's peak memory: the network, batch sizes, precision, optimizer, EMA and data sizes."""
    fields = ("model", "activation", "precision", "ema_decay", "compile")
    parts = {k: getattr(config, k) for k in fields} | {"optimizer": config.optimizer.name, "data": config.data}
    return json.dumps({k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v for k, v in parts.items()})


def start_cell(device: torch.device) -> None:
    """Before a cell: hand the previous cell's cached blocks back to the GPU (other workers on it may need them)
    and start counting this cell's peak."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def record_peak(config: TrainConfig, device: torch.device) -> int | None:
    """After a cell's first epoch: the peak its steps and evaluation reserved, kept for its next cells of that shape."""
    if device.type != "cuda":
        return None
    peak = _MEASURED[memory_key(config)] = torch.cuda.max_memory_reserved(device)
    return peak


def admit(name: str, need: int, free: int, total: int, gpu: str) -> str | None:
    """The refusal of a cell whose measured peak does not fit the GPU's free memory now, or None when it fits.

    `free` is what the GPU has left with other processes (other workers packed on it) running.
    """
    if need <= free:
        return None
    return (
        f"{name}: not started: its peak memory, measured over the first epoch of a cell of the same network, "
        f"batch size and precision, is {need / GiB:.2f} GiB, but {gpu} has {free / GiB:.2f} GiB free of "
        f"{total / GiB:.3g} GiB (other processes on it hold the rest). Run fewer workers on this GPU "
        "(--devices with each GPU fewer times), or lower data.batch_size."
    )


def check_cell(name: str, config: TrainConfig, device: torch.device) -> None:
    """Before a cell on a GPU: refuse it (MemoryError) when its measured peak does not fit the free memory,
    warn when the CPU estimate exceeds the GPU's memory; nothing on other devices."""
    if device.type != "cuda":
        return
    start_cell(device)
    free, total = torch.cuda.mem_get_info(device)
    gpu = torch.cuda.get_device_name(device)
    need = _MEASURED.get(memory_key(config))
    if need is not None:
        refusal = admit(name, need, free, total, gpu)
        if refusal is not None:
            raise MemoryError(refusal)
        return
    est = estimate(config)
    message = too_big_warning(name, est, gpu, total) if est is not None else None
    if message is not None:
        warn(message)
