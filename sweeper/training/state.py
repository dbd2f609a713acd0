"""The checkpoint's shape, written once: what an epoch of `Training` gives on demand and takes back to resume.

Plain dicts of tensors, numbers, strings and containers (TypedDicts, so the file stays loadable
with `torch.load(..., weights_only=True)`); the type says which keys a reader may rely on.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

from torch import Tensor

FORMAT = 1  # bump when the layout below changes: older checkpoints are then not resumed


class Best(TypedDict):
    """The best epoch so far by validation accuracy (the last one without a validation split)."""

    val_acc: float
    epoch: int


class Numerics(TypedDict, total=False):
    """What the run computed with, so a resume computes the same. Absent from checkpoints written
    before they were stored: such a run resolves its precision again, as it always did."""

    precision: str
    device_type: str
    device_rng: Tensor | None  # the CUDA/MPS generator: dropout masks there come from it


class LoopState(Numerics):
    """The training loop's resumable state after an epoch: `train(..., resume=state)` continues it exactly."""

    epoch: int
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    ema: dict[str, Any] | None
    scaler: dict[str, Any]
    generator: Tensor
    torch_rng: Tensor
    history: list[dict[str, float]]
    best: Best
    best_state: dict[str, Tensor]


class Checkpoint(LoopState):
    """last.pt: the loop's state plus what identifies it (layout version, cell id, resolved config)."""

    format: int
    cell: str
    config: dict[str, Any]


class BestWeights(TypedDict):
    """best.pt: the evaluated weights of the best epoch (the EMA's where there is one), no optimizer or RNGs."""

    format: int
    cell: str
    config: dict[str, Any]
    epoch: int
    best: Best
    model: dict[str, Tensor]


def checkpoint(state: LoopState, cell: str, config: dict[str, Any]) -> Checkpoint:
    """The loop's state stamped with the layout version, its cell and config."""
    return Checkpoint(**state, format=FORMAT, cell=cell, config=config)


def best_weights(state: Checkpoint) -> BestWeights:
    """best.pt of a checkpoint: only last.pt resumes, so the optimizer state and RNGs stay out of it."""
    return BestWeights(
        format=state["format"],
        cell=state["cell"],
        config=state["config"],
        epoch=state["epoch"],
        best=state["best"],
        model=state["best_state"],
    )


def checkpoint_of(state: Any, cell: str) -> Checkpoint | None:
    """A loaded file as this cell's checkpoint in the current layout, or None when it is not one."""
    ours = isinstance(state, dict) and state.get("cell") == cell and state.get("format") == FORMAT
    return cast(Checkpoint, state) if ours else None
