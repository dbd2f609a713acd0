"""The loss and the weight average a config names (the optimizer and schedule: optim.py).

Each is built from a TrainConfig alone; train.py wires them into its loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sweeper.catalogue import LOSSES
from sweeper.schema.config import TrainConfig
from sweeper.schema.targets import implementation

# --- losses: catalogue.LOSSES targets, each f(logits, target, block) -> scalar ----------------


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, spec: Any) -> torch.Tensor:
    """Cross-entropy in fp32, label-smoothed by spec.label_smoothing, the batch's mean or sum (spec.reduction)."""
    return F.cross_entropy(logits.float(), target, label_smoothing=spec.label_smoothing, reduction=spec.reduction)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, spec: Any) -> torch.Tensor:
    """Focal loss: cross-entropy weighted by (1 - p_target)^gamma."""
    logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    per_sample = -(1 - logp.exp()).pow(spec.gamma) * logp
    return per_sample.sum() if spec.reduction == "sum" else per_sample.mean()


def loss_fn(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]:
    """The config's data loss (a catalogue loss or the user's), plus an optional L1/L2 weight penalty."""
    spec = cfg.loss
    data_loss = _data_loss(spec)
    weights: dict[int, list[torch.Tensor]] = {}  # per model: its matrices and filters, found once

    def total(logits: torch.Tensor, target: torch.Tensor, model: nn.Module) -> torch.Tensor:
        loss = data_loss(logits, target)
        if spec.penalty == "none":
            return loss
        found = weights.setdefault(id(model), [p for p in model.parameters() if p.ndim > 1])
        # one foreach kernel over all weights instead of two small ops per tensor every step
        norms = torch._foreach_norm(found, 1 if spec.penalty == "l1" else 2)
        norm = torch.stack(norms).sum() if spec.penalty == "l1" else torch.stack(norms).pow(2).sum()
        return loss + spec.penalty_weight * norm

    return total


def _data_loss(spec: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    fn = implementation(LOSSES, spec.name)
    if spec.name in LOSSES:
        return lambda logits, target: fn(logits, target, spec)
    args = dict(spec.model_extra or {})
    if isinstance(fn, type):  # a class: built once with the spec's arguments, its instances called per batch
        instance = fn(**args)
        return lambda logits, target: instance(logits.float(), target)
    return lambda logits, target: fn(logits.float(), target, **args)


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics, updated every step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model)
        self.decay, self.steps = decay, 0
        self._model: nn.Module | None = None
        self._floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._ints: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    def _pairs(self, model: nn.Module) -> None:
        """Pair the average's tensors with the model's once: state_dict() every step cost a Python walk."""
        mine, theirs = self.module.state_dict().values(), model.state_dict().values()
        pairs = list(zip(mine, theirs))
        self._floats = ([a for a, _ in pairs if a.is_floating_point()], [b for a, b in pairs if a.is_floating_point()])
        self._ints = (
            [a for a, _ in pairs if not a.is_floating_point()],
            [b for a, b in pairs if not a.is_floating_point()],
        )
        self._model = model

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the model's current state in (one foreach kernel); integer buffers (batch counts) are copied."""
        if model is not self._model:
            self._pairs(model)
        self.steps += 1
        # ramped as (n)/(n+9) up to `decay`: early averages would otherwise be mostly the random init
        keep = min(self.decay, self.steps / (self.steps + 9))
        if self._floats[0]:
            torch._foreach_lerp_(self._floats[0], self._floats[1], 1 - keep)
        if self._ints[0]:
            torch._foreach_copy_(self._ints[0], self._ints[1])

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the step count, for checkpoints."""
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned (in place: the cached pairs stay valid)."""
        self.module.load_state_dict(state["module"])
        self.steps = state["steps"]
