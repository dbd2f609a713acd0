"""The pieces of a training recipe a config names: optimizer, learning-rate schedule, loss, weight EMA.

Each is built from a TrainConfig alone; train.py wires them into its loop.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sweeper.catalogue import LOSSES, OPTIMIZERS, SCHEDULES
from sweeper.models.targets import implementation
from sweeper.schema.config import OptimizerSpec, TrainConfig
from sweeper.training.muon import split_params


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer over the trainable parameters: a catalogue entry (its capabilities decide
    which settings it is given) or the user's own class, called as Cls(params, lr=..., weight_decay=..., **args)."""
    o = cfg.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    factory = implementation(OPTIMIZERS, o.name)
    if o.name not in OPTIMIZERS:  # the user's: its own arguments, checked against its signature on load
        extra = dict(o.model_extra or {})
        return factory(params, lr=o.lr, weight_decay=o.weight_decay, **extra)
    info = OPTIMIZERS.get(o.name)
    assert isinstance(o, OptimizerSpec)
    if info.filters_only:  # conv filters take it; the rest plain momentum SGD, in the same optimizer
        filters, rest = split_params(model)
        shared = {"lr": o.lr, "momentum": o.momentum, "nesterov": o.nesterov}
        groups = [
            {"params": filters, **shared},
            {"params": rest, "use_muon": False, **shared, "weight_decay": o.weight_decay},
        ]
        return factory([g for g in groups if g["params"]], **shared)
    kwargs: dict[str, Any] = {"lr": o.lr, "weight_decay": o.weight_decay}
    if "momentum" in info.uses:
        kwargs["momentum"] = o.momentum
    if "nesterov" in info.uses:
        kwargs["nesterov"] = o.nesterov
    # One fused kernel per step instead of several small ops per tensor: on a busy CPU each small
    # op waits for its threads, and the per-tensor loop cost the ResNet a tenth of its step time.
    if info.fused:
        kwargs["fused"] = True
    return factory(params, **kwargs)


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1) -> Any:
    """The config's schedule (stepped per epoch; per batch where the catalogue says so), or None for a constant lr."""
    build = implementation(SCHEDULES, cfg.scheduler.name)
    return build(cfg.scheduler, optimizer, cfg.epochs, steps_per_epoch, cfg.optimizer.lr)


# --- schedules: catalogue.SCHEDULES targets, each (block, optimizer, epochs, steps per epoch, base lr) ---


def constant(s: Any, optimizer: torch.optim.Optimizer, epochs: int, steps: int, lr: float) -> None:
    """No scheduler: the learning rate stays as set."""
    return None


def step(s: Any, optimizer: torch.optim.Optimizer, epochs: int, steps: int, lr: float) -> Any:
    """StepLR: multiply by gamma every step_size epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)


def plateau(s: Any, optimizer: torch.optim.Optimizer, epochs: int, steps: int, lr: float) -> Any:
    """ReduceLROnPlateau on validation accuracy."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=s.factor, patience=s.patience)


def onecycle(s: Any, optimizer: torch.optim.Optimizer, epochs: int, steps: int, lr: float) -> Any:
    """Per batch: linear warm-up from start_factor to 1, then linear decay to end_factor."""
    total = max(1, epochs * steps)
    warm = s.warmup_fraction * total

    def ramp(k: int) -> float:
        if k < warm:
            return s.start_factor + (1 - s.start_factor) * k / warm
        return 1 + (s.end_factor - 1) * min(1.0, (k - warm) / max(1.0, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, ramp)


def cosine(s: Any, optimizer: torch.optim.Optimizer, epochs: int, steps: int, lr: float) -> Any:
    """Per epoch: optional linear warm-up, then cosine annealing down to eta_min."""
    floor = s.eta_min / lr

    def factor(epoch: int) -> float:
        if epoch < s.warmup_epochs:
            return (epoch + 1) / s.warmup_epochs
        span = max(1, epochs - s.warmup_epochs)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (epoch - s.warmup_epochs) / span))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --- losses: catalogue.LOSSES targets, each f(logits, target, block) -> scalar ----------------


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, spec: Any) -> torch.Tensor:
    """Cross-entropy in fp32, label-smoothed by spec.label_smoothing."""
    return F.cross_entropy(logits.float(), target, label_smoothing=spec.label_smoothing)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, spec: Any) -> torch.Tensor:
    """Focal loss: cross-entropy weighted by (1 - p_target)^gamma."""
    logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    return (-(1 - logp.exp()).pow(spec.gamma) * logp).mean()


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
