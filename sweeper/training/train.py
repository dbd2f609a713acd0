"""One training run, read top to bottom: helpers first, then the loop. No MLflow, no Optuna.

The loop reports each epoch through `on_epoch(metrics, checkpoint)`; `checkpoint()` builds the
full resumable state lazily, so a caller that does not save pays nothing for it.

Speed comes from the data path and the settings, not from a different loop: uint8 images live on
the device, weak/none augmentation is a few batched tensor ops there, per-image presets are made
ahead by worker processes, and channels_last, autocast (bf16, or fp16 with a gradient scaler),
large-batch inference-mode evaluation and optional torch.compile are config fields.

The device and precision rules live in sweeper.device; the optimizer, schedule, loss and weight
average a config names are built by sweeper.recipe.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sweeper.models import count_params, create_model
from sweeper.schema.config import TrainConfig
from sweeper.settings import get_settings
from sweeper.training.augment import PER_IMAGE, augment_batch, default_workers, normalize, planned_batches
from sweeper.training.data import CifarData, Split
from sweeper.training.device import (
    THREAD_SAMPLE_S,
    apply_threads,
    autocast,
    choose_precision,  # noqa: F401  (tests and benchmarks import it from here)
    input_format,
    needs_grad_scaler,
    pick_device,
    pick_precision,
    to_device,
)
from sweeper.training.recipe import WeightAverage, build_optimizer, build_scheduler, loss_fn
from sweeper.training.state import Best, LoopState

OnEpoch = Callable[[dict[str, float], Callable[[], LoopState]], None]
FIT_SAMPLE = 5000  # training images a model's data-dependent init (`fit_data`) sees


@dataclass
class Step:
    """What `on_step` sees after backward, before the optimizer step: gradients are in place."""

    step: int  # 1-based, counted over the whole run
    epoch: int
    loss: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]
    autocast: Callable[[], Any]


OnStep = Callable[[Step], None]


@dataclass
class TrainResult:
    """What a run produced: per-epoch history, summary metrics and the final model."""

    history: list[dict[str, float]]
    summary: dict[str, float]
    model: nn.Module = field(repr=False)
    best_state: dict[str, torch.Tensor] = field(repr=False)


# --- the model, evaluation, seeding and batches ---------------------------------------------


def build_model(cfg: TrainConfig) -> nn.Module:
    """The network of a config, through the model registry."""
    kwargs = cfg.model.model_dump(exclude={"name"})
    return create_model(cfg.model.name, activation=cfg.activation, num_classes=10, **kwargs)


@torch.inference_mode()
def evaluate(
    model: nn.Module, split: Split, cfg: TrainConfig, device: torch.device, precision: str
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a split, in eval mode, in large batches; `tta` adds each mirror image."""
    if len(split.labels) == 0:
        return math.nan, math.nan
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    fmt = input_format(cfg, device)
    for start in range(0, len(split.labels), cfg.data.eval_batch_size):
        x = split.images[start : start + cfg.data.eval_batch_size].to(device, non_blocking=True)
        y = split.labels[start : start + cfg.data.eval_batch_size].to(device, non_blocking=True)
        x = normalize(x, cfg.data.normalize).contiguous(memory_format=fmt)
        with autocast(device, precision):
            logits = model(x).float()
            if cfg.tta:  # a mirrored image is as likely as the original: average both predictions
                logits = (logits + model(x.flip(-1).contiguous(memory_format=fmt)).float()) / 2
        total_loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return total_loss.item() / len(split.labels), correct.item() / len(split.labels)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (init, dropout) and return the generator for data order and augmentation."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit_to_data(model: nn.Module, images: torch.Tensor, cfg: TrainConfig) -> None:
    """Give a model with a data-dependent init (`fit_data`, e.g. patch whitening) a sample of training images."""
    fit = getattr(model, "fit_data", None)
    if fit is not None:
        fit(normalize(images[:FIT_SAMPLE], cfg.data.normalize))


def epoch_batches(
    cfg: TrainConfig,
    data: CifarData,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    steps: int,
    fmt: torch.memory_format,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (normalised augmented images, labels) in a seeded random order, on the labels' device.

    weak/none augment each batch on the device as it is taken. Per-image presets draw one seed per
    batch here, up front and in order, and worker processes prepare the batches from (indices,
    seed) while the model trains: the same seed gives the same batches with or without workers.
    """
    device, bs = labels.device, cfg.data.batch_size
    order = torch.randperm(len(labels), generator=generator).to(device)
    index = [order[k * bs : (k + 1) * bs] for k in range(steps)]
    if cfg.data.augment in PER_IMAGE:
        seeds = torch.randint(2**62, (steps,), generator=generator).tolist()
        plan = [(i.cpu(), seed) for i, seed in zip(index, seeds)]
        batches = planned_batches(
            data.train.images, cfg.data.augment, plan, workers=default_workers(), pin=device.type == "cuda"
        )
    else:
        batches = (augment_batch(images[i], cfg.data.augment, generator) for i in index)
    for i, x in zip(index, batches):
        yield normalize(x.to(device, non_blocking=True), cfg.data.normalize).contiguous(memory_format=fmt), labels[i]


# --- the loop -------------------------------------------------------------------------------


def train(
    cfg: TrainConfig,
    data: CifarData,
    *,
    device: str | torch.device = "auto",
    on_epoch: OnEpoch | None = None,
    on_step: OnStep | None = None,
    resume: LoopState | None = None,
) -> TrainResult:
    """Train one config on one dataset; `resume` is a state from a previous `checkpoint()`.

    `on_step` (analysis probes, per-step loss curves) must leave weights, gradients, BatchNorm
    statistics and RNG states as it found them; it costs a device sync per step, so it is opt-in.
    """
    device = pick_device(device) if isinstance(device, str) else device
    precision = pick_precision(cfg.precision, device)
    generator = seed_everything(cfg.seed)
    fmt = input_format(cfg, device)
    train_x, train_y = data.train.images.to(device), data.train.labels.to(device)
    n, bs = len(train_y), cfg.data.batch_size
    steps = n // bs if n >= bs else 1  # drop the ragged last batch: BatchNorm dislikes a batch of 1
    model = to_device(build_model(cfg), cfg, device)
    fit_to_data(model, train_x, cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, steps)
    per_batch_schedule = cfg.scheduler.name == "onecycle"
    criterion = loss_fn(cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(precision))
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    evaluated = ema.module if ema is not None else model  # what validation, test and the result see
    # compiled wrappers share their module's weights; state dicts and hooks use the modules
    net: nn.Module = torch.compile(model) if cfg.compile else model  # type: ignore[assignment]
    eval_net: nn.Module = net if evaluated is model else torch.compile(evaluated) if cfg.compile else evaluated  # type: ignore[assignment]

    history: list[dict[str, float]] = []
    best = Best(val_acc=-1.0, epoch=0)
    best_state = copy.deepcopy(evaluated.state_dict())
    start_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("scheduler") is not None:
            scheduler.load_state_dict(resume["scheduler"])
        if ema is not None and resume["ema"] is not None:
            ema.load_state_dict(resume["ema"])
        scaler.load_state_dict(resume["scaler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        history, best, best_state = resume["history"], resume["best"], resume["best_state"]
        start_epoch = resume["epoch"] + 1

    threads = get_settings().threads
    apply_threads(threads, device)
    for epoch in range(start_epoch, cfg.epochs + 1):
        if threads == "auto" and history and history[-1]["epoch_time"] > 50 * THREAD_SAMPLE_S:
            apply_threads(threads, device)  # other processes come and go during a long run
        model.train()
        tick = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for step, (x, y) in enumerate(epoch_batches(cfg, data, train_x, train_y, generator, steps, fmt)):
            with autocast(device, precision):
                logits = net(x)
            loss = criterion(logits, y, model)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if on_step is not None:
                on_step(
                    Step(
                        (epoch - 1) * steps + step + 1,
                        epoch,
                        loss.detach(),
                        x,
                        y,
                        model,
                        optimizer,
                        criterion,
                        lambda: autocast(device, precision),
                    )
                )
            scaler.step(optimizer)
            scaler.update()
            if per_batch_schedule:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            # Accumulate on the device: a .item() per step would sync a GPU every batch.
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
        seen = steps * min(bs, n)
        train_time = time.perf_counter() - tick
        val_loss, val_acc = evaluate(eval_net, data.val, cfg, device, precision)
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_acc if not math.isnan(val_acc) else correct.item() / seen)
        elif scheduler is not None and not per_batch_schedule:
            scheduler.step()
        metrics = {
            "train_loss": loss_sum.item() / seen,
            "train_acc": correct.item() / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "epoch_time": time.perf_counter() - tick,
            "images_per_s": seen / train_time,
        }
        if not math.isfinite(metrics["train_loss"]):
            raise FloatingPointError(f"training loss became {metrics['train_loss']} at epoch {epoch}")
        history.append({"epoch": epoch, **metrics})
        if math.isnan(val_acc) or val_acc > best["val_acc"]:
            best = Best(val_acc=val_acc, epoch=epoch)
            best_state = copy.deepcopy(evaluated.state_dict())
        if on_epoch is not None:

            def checkpoint(epoch: int = epoch, best: Best = best, best_state: dict = best_state) -> LoopState:
                return LoopState(
                    epoch=epoch,
                    model=model.state_dict(),
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict() if scheduler is not None else None,
                    ema=ema.state_dict() if ema is not None else None,
                    scaler=scaler.state_dict(),
                    generator=generator.get_state(),
                    torch_rng=torch.get_rng_state(),
                    history=history,
                    best=best,
                    best_state=best_state,
                )

            on_epoch({"epoch": epoch, **metrics}, checkpoint)

    test_loss, test_acc = evaluate(eval_net, data.test, cfg, device, precision)
    if history and best["epoch"] == history[-1]["epoch"]:
        test_acc_best = test_acc  # the best state is the last one (always so without a validation split)
    else:
        last_state = copy.deepcopy(evaluated.state_dict())
        evaluated.load_state_dict(best_state)
        _, test_acc_best = evaluate(eval_net, data.test, cfg, device, precision)
        evaluated.load_state_dict(last_state)
    summary = {
        "test_loss": test_loss,
        "test_acc": test_acc,
        "test_acc_best": test_acc_best,
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_train_loss": history[-1]["train_loss"] if history else math.nan,
        "final_train_acc": history[-1]["train_acc"] if history else math.nan,
        "final_val_loss": history[-1]["val_loss"] if history else math.nan,
        "params": count_params(model),
    }
    return TrainResult(history=history, summary=summary, model=evaluated, best_state=best_state)
