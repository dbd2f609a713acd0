"""One training run, read top to bottom: helpers first, then the loop. No MLflow, no Optuna, no callbacks.

`Training` yields its epochs (metrics, best so far, the resumable state built on demand) and the
caller owns the side effects: logging, checkpoints, reporting to a pruner, stopping early.
`finish()` gives the final evaluation; `train()` runs one to the end for scripts and tests.

Speed comes from the data path and the settings, not from a different loop: uint8 images live on
the device, augmentation is batched tensor ops there, and channels_last, autocast (bf16, or fp16
with a gradient scaler), large-batch inference-mode evaluation and optional torch.compile are
config fields. Device rules live in device.py, numerics (precision, TF32, determinism, RNGs) in
precision.py, the optimizer and schedule in optim.py, the loss and weight average in recipe.py,
an epoch's batches in batches.py and evaluation in evaluate.py.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sweeper.catalogue import SCHEDULES
from sweeper.errors import warn
from sweeper.models import count_params
from sweeper.schema.config import TrainConfig
from sweeper.settings import get_settings
from sweeper.training.batches import epoch_batches
from sweeper.training.data import CifarData
from sweeper.training.device import (
    THREAD_SAMPLE_S,
    apply_threads,
    input_format,
    pick_device,
    synchronize,
)
from sweeper.training.evaluate import evaluate
from sweeper.training.parts import (  # noqa: F401 - re-exported: callers import them from train
    FIT_SAMPLE,
    Parts,
    Progress,
    build_model,
    fit_to_data,
    loop_state,
    resume_from,
    seed_everything,
    setup,
)
from sweeper.training.precision import (
    autocast,
    numerics,
    resolve_for,
)
from sweeper.training.state import Best, LoopState

OnEpoch = Callable[[dict[str, float], Callable[[], LoopState]], None]


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
    """What a run produced: per-epoch history, summary metrics, the final model and the precision it ran in."""

    history: list[dict[str, float]]
    summary: dict[str, float]
    model: nn.Module = field(repr=False)
    best_state: dict[str, torch.Tensor] = field(repr=False)
    precision: str = "fp32"


def finish(
    cfg: TrainConfig, data: CifarData, parts: Parts, progress: Progress, device: torch.device, precision: str
) -> TrainResult:
    """Test the last weights (and the best epoch's, when another), and summarise the run."""
    evaluated, history, best = parts.evaluated, progress.history, progress.best
    test = evaluate(parts.eval_net, data.test, cfg, device, precision)
    if history and best["epoch"] == history[-1]["epoch"]:
        test_acc_best = test["acc"]  # the best state is the last one (always so without a validation split)
    else:
        last_state = copy.deepcopy(evaluated.state_dict())
        evaluated.load_state_dict(progress.best_state)
        test_acc_best = evaluate(parts.eval_net, data.test, cfg, device, precision)["acc"]
        evaluated.load_state_dict(last_state)
    summary = {
        "test_loss": test["loss"],
        "test_acc": test["acc"],
        "test_acc_best": test_acc_best,
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_train_loss": history[-1]["train_loss"] if history else math.nan,
        "final_train_acc": history[-1]["train_acc"] if history else math.nan,
        "final_val_loss": history[-1]["val_loss"] if history else math.nan,
        "params": count_params(parts.model),
    }
    return TrainResult(history, summary, evaluated, progress.best_state, precision)


# --- one step and the loop ------------------------------------------------------------------


def train_step(
    parts: Parts,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    precision: str,
    per_batch_schedule: bool,
    on_step: Callable[[torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, optimizer (and per-batch schedule, EMA) on one batch; (loss, logits), detached.

    Nothing here reads a value back to the host, so a GPU runs ahead of Python (benchmarks/gpu_check.py
    counts the syncs); fp16's gradient scaler is the exception: it checks for infs every step.
    """
    with autocast(device, precision):
        logits = parts.net(x)
    loss = parts.criterion(logits, y, parts.model)
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    if on_step is not None:  # gradients in place, before the optimizer moves the weights
        on_step(loss.detach())
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    if per_batch_schedule:
        parts.scheduler.step()
    if parts.ema is not None:
        parts.ema.update(parts.model)
    return loss.detach(), logits.detach()


def _probe(
    on_step: OnStep, at: int, epoch: int, x: torch.Tensor, y: torch.Tensor, parts: Parts, cast: Callable[[], Any],
    loss: torch.Tensor,
) -> None:  # fmt: skip
    on_step(Step(at, epoch, loss, x, y, parts.model, parts.optimizer, parts.criterion, cast))


@dataclass
class Epoch:
    """One trained epoch as the caller sees it: its metrics, whether it is the best so far, its resumable state."""

    metrics: dict[str, float]  # with the "epoch" number
    best: bool
    state: Callable[[], LoopState]  # built on demand: a caller that does not save pays nothing

    @property
    def number(self) -> int:
        """The epoch's number, 1-based."""
        return int(self.metrics["epoch"])


class Training:
    """One run's training as an iterable of its epochs; the caller owns every side effect (log, checkpoint,
    report, stop) and `finish()` gives the final evaluation.

    The numerics (TF32 policy, determinism) hold while epochs run and come back when the epochs end, when
    the caller stops early and closes it (`with Training(...)`), or when an epoch raises. `resume` is a
    state from an earlier epoch's `state()`. `on_step` (analysis probes) must leave weights, gradients,
    BatchNorm statistics and RNG states as it found them; it costs a device sync per step, so it is opt-in.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: CifarData,
        *,
        device: str | torch.device = "auto",
        on_step: OnStep | None = None,
        resume: LoopState | None = None,
    ) -> None:
        self.cfg, self.data, self.on_step, self.resume = cfg, data, on_step, resume
        self.device = pick_device(device) if isinstance(device, str) else device
        resolved = resolve_for(cfg.precision, self.device, resume)  # a resume keeps what the run began with
        self.precision = resolved.precision
        if resolved.converted:
            warn(f"precision {resolved.converted}")
        saved_on = resume.get("device_type") if resume is not None else None
        if saved_on not in (None, self.device.type):
            warn(
                f"resumed on {self.device.type}, saved on {saved_on}: the {saved_on} random generator does not "
                "carry over, so dropout masks differ from an uninterrupted run from here on"
            )
        self._parts: Parts | None = None
        self._progress: Progress | None = None
        self._epochs = self._run()

    def __iter__(self) -> Iterator[Epoch]:
        return self._epochs

    def __enter__(self) -> Training:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop early: the numerics context exits now, not when the garbage collector gets to it."""
        self._epochs.close()

    def finish(self) -> TrainResult:
        """Test the last weights (and the best epoch's) and summarise; after the last epoch."""
        if self._parts is None or self._progress is None:
            raise RuntimeError("Training.finish() before its epochs were iterated")
        with numerics(self.precision, self.device, self.cfg.deterministic):
            return finish(self.cfg, self.data, self._parts, self._progress, self.device, self.precision)

    def _run(self) -> Generator[Epoch, None, None]:
        with numerics(self.precision, self.device, self.cfg.deterministic):
            yield from _epochs(self)


def train(
    cfg: TrainConfig,
    data: CifarData,
    *,
    device: str | torch.device = "auto",
    on_epoch: OnEpoch | None = None,
    on_step: OnStep | None = None,
    resume: LoopState | None = None,
) -> TrainResult:
    """Train one config to the end (scripts and tests): Training's epochs, each shown to `on_epoch(metrics, state)`."""
    with Training(cfg, data, device=device, on_step=on_step, resume=resume) as training:
        for epoch in training:
            if on_epoch is not None:
                on_epoch(epoch.metrics, epoch.state)
        return training.finish()


def _epochs(run: Training) -> Iterator[Epoch]:
    """The loop: set up (or resume), then one epoch at a time, each handed to the caller as it ends."""
    cfg, data, device, precision, on_step = run.cfg, run.data, run.device, run.precision, run.on_step
    generator = seed_everything(cfg.seed)
    fmt = input_format(cfg, device)
    train_x, train_y = data.train.images.to(device), data.train.labels.to(device)
    n, bs = len(train_y), cfg.data.batch_size
    steps = n // bs if n >= bs else 1  # drop the ragged last batch: BatchNorm dislikes a batch of 1
    parts = run._parts = setup(cfg, train_x, device, precision, steps)
    model, optimizer, scheduler = parts.model, parts.optimizer, parts.scheduler
    per_batch_schedule = SCHEDULES.get(cfg.scheduler.name).per_batch
    summed = getattr(cfg.loss, "reduction", "mean") == "sum"
    if run.resume is not None:
        progress = resume_from(run.resume, parts, generator, device)
    else:
        progress = Progress([], Best(val_acc=-1.0, epoch=0), copy.deepcopy(parts.evaluated.state_dict()))
    run._progress = progress

    threads = get_settings().threads
    apply_threads(threads, device)
    for epoch in range(progress.start_epoch, cfg.epochs + 1):
        if threads == "auto" and progress.history and progress.history[-1]["epoch_time"] > 50 * THREAD_SAMPLE_S:
            apply_threads(threads, device)  # other processes come and go during a long run
        model.train()
        tick = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for step, (x, y) in enumerate(epoch_batches(cfg, train_x, train_y, generator, steps, fmt, epoch)):
            hook = None
            if on_step is not None:  # the probes' view of this step, once its gradients are in place
                at = (epoch - 1) * steps + step + 1
                hook = functools.partial(_probe, on_step, at, epoch, x, y, parts, lambda: autocast(device, precision))
            loss, logits = train_step(parts, x, y, device, precision, per_batch_schedule, hook)
            # Accumulate on the device: a .item() per step would sync a GPU every batch. (A summed loss is the
            # batch's total already; the metric is per image either way.)
            loss_sum += loss if summed else loss * len(y)
            correct += (logits.argmax(1) == y).sum()
        seen = steps * min(bs, n)
        synchronize(device)  # once an epoch: the clock stops when the GPU finished, not when Python queued
        train_time = time.perf_counter() - tick
        val = evaluate(parts.eval_net, data.val, cfg, device, precision)
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val["acc"] if not math.isnan(val["acc"]) else correct.item() / seen)
        elif scheduler is not None and not per_batch_schedule:
            scheduler.step()
        metrics = {
            "train_loss": loss_sum.item() / seen,
            "train_acc": correct.item() / seen,
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "lr": lr,
            "epoch_time": time.perf_counter() - tick,
            "images_per_s": seen / train_time,
        }
        if not math.isfinite(metrics["train_loss"]):
            raise FloatingPointError(f"training loss became {metrics['train_loss']} at epoch {epoch}")
        progress.history.append({"epoch": epoch, **metrics})
        best = math.isnan(val["acc"]) or val["acc"] > progress.best["val_acc"]
        if best:
            progress.best = Best(val_acc=val["acc"], epoch=epoch)
            progress.best_state = copy.deepcopy(parts.evaluated.state_dict())
        # bound now: the state must be this epoch's record, not a later one's, whenever the caller asks
        record = Progress(progress.history, progress.best, progress.best_state)
        yield Epoch(
            {"epoch": epoch, **metrics},
            best,
            functools.partial(loop_state, epoch, parts, record, generator, device, precision),
        )
