"""The optimizer and learning-rate schedule a config names, over the model's parameter groups.

A model may say how its parameters divide (`param_groups()`: fast_net's filters, head, norm_biases,
whitening bias); others divide by shape (filters, matrices, vectors). `optimizer.groups` sets each
group's lr, momentum, weight decay and how many epochs it trains. An optimizer for filters only
(Muon) takes the `filters` group and plain momentum SGD the others, in one optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sweeper.catalogue import DEFAULT_GROUPS, OPTIMIZERS, SCHEDULES
from sweeper.errors import UserError
from sweeper.schema.config import OptimizerSpec, TrainConfig
from sweeper.schema.targets import implementation
from sweeper.training.device import match_param_layouts
from sweeper.training.precision import device_precisions

Factor = Callable[[int], float]  # a schedule's lr multiplier at step (or epoch) k


def parameter_groups(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """The model's trainable parameters by group: its own `param_groups()`, else by shape."""
    own = getattr(model, "param_groups", None)
    named: dict[str, list[torch.Tensor]] = own() if callable(own) else {
        name: [p for p in model.parameters() if rule(p)]
        for name, rule in zip(DEFAULT_GROUPS, (lambda p: p.ndim > 2, lambda p: p.ndim == 2, lambda p: p.ndim < 2))
    }  # fmt: skip
    named = {name: [p for p in params if p.requires_grad] for name, params in named.items()}
    covered = {id(p) for params in named.values() for p in params}
    rest: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad and id(p) not in covered]
    return {**named, **({"rest": rest} if rest else {})}


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer: a catalogue entry (its capabilities decide which settings it is given) or the
    user's own class, called as Cls(params, lr=..., weight_decay=..., **args)."""
    o = cfg.optimizer
    factory = implementation(OPTIMIZERS, o.name)
    if o.name not in OPTIMIZERS:  # the user's: its own arguments, checked against its signature on load
        params = [p for p in model.parameters() if p.requires_grad]
        return factory(params, lr=o.lr, weight_decay=o.weight_decay, **dict(o.model_extra or {}))
    assert isinstance(o, OptimizerSpec)
    info = OPTIMIZERS.get(o.name)
    kwargs: dict[str, Any] = {"lr": o.lr, "weight_decay": o.weight_decay}
    kwargs |= {k: getattr(o, k) for k in ("momentum", "nesterov") if k in info.uses}
    # One fused kernel per step instead of several small ops per tensor: on a busy CPU each small
    # op waits for its threads, and the per-tensor loop cost the ResNet a tenth of its step time.
    kwargs |= {"fused": True} if info.fused else {}
    if not o.groups and not info.filters_only:  # one group, as every run before groups existed
        return factory([p for p in model.parameters() if p.requires_grad], **kwargs)
    groups = []
    for name, members in parameter_groups(model).items():
        if not members:
            continue
        group = _group_settings(o, name, info.uses)
        if info.filters_only:  # Muon: filters orthogonalised; the rest momentum SGD (its weight decay)
            group["use_muon"] = name == "filters"
            group.setdefault("weight_decay", 0.0 if name == "filters" else o.weight_decay)
        groups.append({"params": members, "name": name, **group})
    if info.filters_only:
        kwargs.pop("weight_decay")
        # Newton-Schulz in bf16 where the hardware has it; elsewhere emulated bf16 is only slower than fp32
        device = next(model.parameters()).device
        kwargs["precision"] = "bf16" if "bf16" in device_precisions(device) else "fp32"
    return factory(groups, **kwargs)


# Group settings chosen for the device, not by the run: a resume on another GPU chooses them again.
DEVICE_CHOSEN = ("precision",)  # Muon's Newton-Schulz dtype: bf16 where native, else fp32


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer state, keeping the settings this device chose (DEVICE_CHOSEN).

    `load_state_dict` restores every group key: a run begun on an A100 and resumed on a V100 ran
    Muon's Newton-Schulz in emulated bf16, the old GPU's choice.
    """
    chosen = [{k: g[k] for k in DEVICE_CHOSEN if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, keep in zip(optimizer.param_groups, chosen):
        group.update(keep)
    match_param_layouts(optimizer)  # the state may come from a device with other layouts


def _group_settings(o: OptimizerSpec, name: str, uses: frozenset[str]) -> dict[str, Any]:
    spec = o.groups.get(name)
    if spec is None:
        return {}
    if spec.momentum is not None and "momentum" not in uses:
        raise UserError(f"optimizer.groups.{name}.momentum: optimizer {o.name} has no momentum.")
    settings = {"lr": spec.lr, "momentum": spec.momentum, "weight_decay": spec.weight_decay}
    settings = {k: v for k, v in settings.items() if v is not None}
    return settings | ({"train_epochs": spec.train_epochs} if spec.train_epochs else {})


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1) -> Any:
    """The config's schedule (stepped per epoch; per batch where the catalogue says so), or None for a constant lr.

    A group with `train_epochs` N follows the schedule as if the run had N epochs, then stays at lr 0.
    """
    info = SCHEDULES.get(cfg.scheduler.name)
    build = implementation(SCHEDULES, cfg.scheduler.name)
    limits = [group.get("train_epochs") for group in optimizer.param_groups]
    if not info.factor:
        return build(cfg.scheduler, optimizer, cfg.epochs, steps_per_epoch, cfg.optimizer.lr)
    if not any(limits) and cfg.scheduler.name == "none":
        return None  # a constant lr needs no scheduler
    unit = steps_per_epoch if info.per_batch else 1
    factors = [  # each group's own lr: cosine's floor is eta_min whatever lr a group starts from
        _until(build(cfg.scheduler, limit or cfg.epochs, steps_per_epoch, group["lr"]), limit * unit if limit else None)
        for limit, group in zip(limits, optimizer.param_groups)
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def _until(factor: Factor, end: int | None) -> Factor:
    return factor if end is None else lambda k: factor(k) if k < end else 0.0


# --- schedules: catalogue.SCHEDULES targets. Factor schedules give the multiplier at step k from
# (block, epochs, steps per epoch, base lr); the others build a torch scheduler.


def constant(s: Any, epochs: int, steps: int, lr: float) -> Factor:
    """The learning rate as set."""
    return lambda k: 1.0


def onecycle(s: Any, epochs: int, steps: int, lr: float) -> Factor:
    """Per batch: linear warm-up from start_factor to 1, then linear decay to end_factor."""
    total = max(1, epochs * steps)
    warm = s.warmup_fraction * total

    def ramp(k: int) -> float:
        if k < warm:
            return s.start_factor + (1 - s.start_factor) * k / warm
        return 1 + (s.end_factor - 1) * min(1.0, (k - warm) / max(1.0, total - warm))

    return ramp


def cosine(s: Any, epochs: int, steps: int, lr: float) -> Factor:
    """Per epoch: optional linear warm-up, then cosine annealing down to eta_min."""
    floor = s.eta_min / lr

    def factor(epoch: int) -> float:
        if epoch < s.warmup_epochs:
            return (epoch + 1) / s.warmup_epochs
        span = max(1, epochs - s.warmup_epochs)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (epoch - s.warmup_epochs) / span))

    return factor


def step(s: Any, optimizer: torch.optim.Optimizer, epochs: int, steps: int, lr: float) -> Any:
    """StepLR: multiply by gamma every step_size epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)


def plateau(s: Any, optimizer: torch.optim.Optimizer, epochs: int, steps: int, lr: float) -> Any:
    """ReduceLROnPlateau on validation accuracy."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=s.factor, patience=s.patience)
