"""A run's parts: the model built and fitted to its data, the optimizer, schedule, loss, scaler and weight
average set up for it, a checkpoint loaded into them, and the resumable state read back out (train.py's loop
uses these; a checkpoint's typed shape is state.py's)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sweeper.models import create_model
from sweeper.schema.config import TrainConfig
from sweeper.training.augment import normalize
from sweeper.training.device import (
    to_device,
)
from sweeper.training.optim import build_optimizer, build_scheduler, load_optimizer_state
from sweeper.training.precision import (
    device_rng_state,
    grad_scaler,
    set_device_rng_state,
)
from sweeper.training.recipe import WeightAverage, loss_fn
from sweeper.training.state import Best, LoopState

FIT_SAMPLE = 5000  # training images a model's data-dependent init (`fit_data`) sees


# --- the model, evaluation, seeding and batches ---------------------------------------------


def build_model(cfg: TrainConfig) -> nn.Module:
    """The network of a config, through the model registry."""
    kwargs = cfg.model.model_dump(exclude={"name"})
    return create_model(cfg.model.name, activation=cfg.activation, num_classes=10, **kwargs)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNGs (init, dropout; every device's) and return the generator for data order and augmentation."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit_to_data(model: nn.Module, images: torch.Tensor, cfg: TrainConfig) -> None:
    """Give a model with a data-dependent init (`fit_data`, e.g. patch whitening) a sample of training images."""
    fit = getattr(model, "fit_data", None)
    if fit is not None:
        fit(normalize(images[:FIT_SAMPLE], cfg.data.normalize))


# --- setup, resume and finish: the named steps around the loop -------------------------------


@dataclass
class Parts:
    """What the loop trains with; built by `setup`, restored by `resume_from`."""

    model: nn.Module  # the module that trains; state dicts and hooks use it
    net: nn.Module  # the same weights, compiled where the config says so
    evaluated: nn.Module  # what validation, test and the result see: the EMA's copy where there is one
    eval_net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]
    scaler: torch.amp.GradScaler
    ema: WeightAverage | None


@dataclass
class Progress:
    """The run's record so far: per-epoch history and the best epoch with its weights."""

    history: list[dict[str, float]]
    best: Best
    best_state: dict[str, torch.Tensor]
    start_epoch: int = 1


def setup(cfg: TrainConfig, train_x: torch.Tensor, device: torch.device, precision: str, steps: int) -> Parts:
    """Build the model on its device (fitted to the data where it asks), optimizer, schedule, loss, scaler and EMA."""
    model = to_device(build_model(cfg), cfg, device)
    fit_to_data(model, train_x, cfg)
    optimizer = build_optimizer(cfg, model)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    evaluated = ema.module if ema is not None else model
    # compiled wrappers share their module's weights; state dicts and hooks use the modules
    net: nn.Module = torch.compile(model) if cfg.compile else model  # type: ignore[assignment]
    eval_net: nn.Module = net if evaluated is model else torch.compile(evaluated) if cfg.compile else evaluated  # type: ignore[assignment]
    return Parts(
        model=model,
        net=net,
        evaluated=evaluated,
        eval_net=eval_net,
        optimizer=optimizer,
        scheduler=build_scheduler(cfg, optimizer, steps),
        criterion=loss_fn(cfg),
        scaler=grad_scaler(cfg, device, precision),
        ema=ema,
    )


def resume_from(state: LoopState, parts: Parts, generator: torch.Generator, device: torch.device) -> Progress:
    """Load a checkpoint into the parts and RNGs; the run continues after its epoch."""
    parts.model.load_state_dict(state["model"])
    load_optimizer_state(parts.optimizer, state["optimizer"])  # Muon's NS precision stays this device's
    if parts.scheduler is not None and state.get("scheduler") is not None:
        parts.scheduler.load_state_dict(state["scheduler"])
    if parts.ema is not None and state["ema"] is not None:
        parts.ema.load_state_dict(state["ema"])
    # A disabled scaler saves {}; an enabled one refuses it (a run converted from bf16 to fp16).
    if parts.scaler.is_enabled() and state.get("scaler"):
        parts.scaler.load_state_dict(state["scaler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("device_type") == device.type:  # another device type's generator does not carry over
        set_device_rng_state(device, state.get("device_rng"))
    return Progress(state["history"], state["best"], state["best_state"], start_epoch=state["epoch"] + 1)


def loop_state(
    epoch: int, parts: Parts, progress: Progress, generator: torch.Generator, device: torch.device, precision: str
) -> LoopState:
    """The resumable state after an epoch (references, not copies: the caller snapshots it)."""
    return LoopState(
        epoch=epoch,
        model=parts.model.state_dict(),
        optimizer=parts.optimizer.state_dict(),
        scheduler=parts.scheduler.state_dict() if parts.scheduler is not None else None,
        ema=parts.ema.state_dict() if parts.ema is not None else None,
        scaler=parts.scaler.state_dict(),
        generator=generator.get_state(),
        torch_rng=torch.get_rng_state(),
        history=progress.history,
        best=progress.best,
        best_state=progress.best_state,
        precision=precision,
        device_type=device.type,
        device_rng=device_rng_state(device),
    )
