"""One training run, read top to bottom: helpers first, then the loop. No MLflow, no Optuna.

The loop reports each epoch through `on_epoch(metrics, checkpoint)`; `checkpoint()` builds the
full resumable state lazily, so a caller that does not save pays nothing for it.

Speed comes from the data path and the settings, not from a different loop: uint8 images live on
the device, weak/none augmentation is a few batched tensor ops there, per-image presets are made
ahead by worker processes, and channels_last, autocast (bf16, or fp16 with a gradient scaler),
large-batch inference-mode evaluation and optional torch.compile are config fields.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sweeper.augment import PER_IMAGE, augment_batch, default_workers, normalize, planned_batches
from sweeper.config import TrainConfig
from sweeper.data import CifarData, Split
from sweeper.errors import UserError
from sweeper.models import count_params, create_model, first_conv

OnEpoch = Callable[[dict[str, float], Callable[[], dict[str, Any]]], None]
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


# --- hardware -------------------------------------------------------------------------------


def pick_device(name: str = "auto") -> torch.device:
    """'auto' means cuda, then mps, then cpu; anything else is passed to torch.device."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise UserError(f"device '{name}' is not a device torch knows ({exc}); use auto, cpu, cuda or cuda:N.") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device '{name}' was asked for, but torch sees no CUDA GPU here; use --device cpu or auto.")
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
    model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    if cfg.channels_last and device.type == "cpu":
        # oneDNN's bf16 weight gradient for a 3-channel channels_last conv ran many times slower
        # than NCHW (and erratically) on our AVX-512 CPU: NCHW images into an NCHW first conv,
        # channels_last after it.
        conv = first_conv(model) if any(isinstance(m, nn.Conv2d) for m in model.modules()) else None
        if conv is not None:
            conv.weight.data = conv.weight.data.contiguous()
    return model


# --- the pieces of a recipe -----------------------------------------------------------------


def build_model(cfg: TrainConfig) -> nn.Module:
    """The network of a config, through the model registry."""
    kwargs = cfg.model.model_dump(exclude={"name"})
    return create_model(cfg.model.name, activation=cfg.activation, num_classes=10, **kwargs)


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam, AdamW or RMSprop with weight decay."""
    o = cfg.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    # One fused kernel per step instead of several small ops per tensor: on a busy CPU each small
    # op waits for its threads, and the per-tensor loop cost the ResNet a tenth of its step time.
    fused = {"fused": True} if o.name != "rmsprop" else {}
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay, **fused)
    factory = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}[o.name]
    return factory(params, lr=o.lr, weight_decay=o.weight_decay, **fused)


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1) -> Any:
    """A scheduler (stepped per epoch; per batch for 'onecycle'), or None for a constant learning rate."""
    s, epochs = cfg.scheduler, cfg.epochs
    if s.name == "onecycle":
        total = max(1, epochs * steps_per_epoch)
        warm = s.warmup_fraction * total

        def ramp(step: int) -> float:
            if step < warm:
                return s.start_factor + (1 - s.start_factor) * step / warm
            return 1 + (s.end_factor - 1) * min(1.0, (step - warm) / max(1.0, total - warm))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, ramp)
    if s.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    if s.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=s.factor, patience=s.patience)
    if s.name == "cosine":
        floor = s.eta_min / cfg.optimizer.lr

        def factor(epoch: int) -> float:
            if epoch < s.warmup_epochs:
                return (epoch + 1) / s.warmup_epochs
            span = max(1, epochs - s.warmup_epochs)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (epoch - s.warmup_epochs) / span))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return None


def loss_fn(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]:
    """Cross-entropy (label smoothing) or focal loss, plus an optional L1/L2 weight penalty."""
    spec = cfg.loss

    def data_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if spec.name == "focal":
            logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
            return (-(1 - logp.exp()).pow(spec.gamma) * logp).mean()
        return F.cross_entropy(logits.float(), target, label_smoothing=spec.label_smoothing)

    def total(logits: torch.Tensor, target: torch.Tensor, model: nn.Module) -> torch.Tensor:
        loss = data_loss(logits, target)
        if spec.penalty != "none":
            weights = [p for p in model.parameters() if p.ndim > 1]
            norm = sum(p.abs().sum() if spec.penalty == "l1" else p.pow(2).sum() for p in weights)
            loss = loss + spec.penalty_weight * norm
        return loss

    return total


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, cfg: TrainConfig, device: torch.device, precision: str) -> tuple[float, float]:
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


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics, updated every step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model)
        self.decay, self.steps = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the model's current state in; integer buffers (batch counts) are copied."""
        self.steps += 1
        # ramped as (n)/(n+9) up to `decay`: early averages would otherwise be mostly the random init
        keep = min(self.decay, self.steps / (self.steps + 9))
        for mine, current in zip(self.module.state_dict().values(), model.state_dict().values()):
            if mine.is_floating_point():
                mine.lerp_(current, 1 - keep)
            else:
                mine.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the step count, for checkpoints."""
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.module.load_state_dict(state["module"])
        self.steps = state["steps"]


def epoch_batches(
    cfg: TrainConfig, data: CifarData, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
    steps: int, fmt: torch.memory_format,
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
        batches = planned_batches(data.train.images, cfg.data.augment, plan, workers=default_workers(),
                                  pin=device.type == "cuda")
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
    resume: dict[str, Any] | None = None,
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
    net = torch.compile(model) if cfg.compile else model
    eval_net = net if evaluated is model else torch.compile(evaluated) if cfg.compile else evaluated

    history: list[dict[str, float]] = []
    best = {"val_acc": -1.0, "epoch": 0}
    best_state = copy.deepcopy(evaluated.state_dict())
    start_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("scheduler") is not None:
            scheduler.load_state_dict(resume["scheduler"])
        if ema is not None:
            ema.load_state_dict(resume["ema"])
        scaler.load_state_dict(resume["scaler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        history, best, best_state = resume["history"], resume["best"], resume["best_state"]
        start_epoch = resume["epoch"] + 1

    for epoch in range(start_epoch, cfg.epochs + 1):
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
                on_step(Step((epoch - 1) * steps + step + 1, epoch, loss.detach(), x, y, model, optimizer,
                             criterion, lambda: autocast(device, precision)))
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
            best = {"val_acc": val_acc, "epoch": epoch}
            best_state = copy.deepcopy(evaluated.state_dict())
        if on_epoch is not None:
            def checkpoint(epoch: int = epoch) -> dict[str, Any]:
                return {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "ema": ema.state_dict() if ema is not None else None,
                    "scaler": scaler.state_dict(), "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(), "history": history, "best": best,
                    "best_state": best_state,
                }

            on_epoch({"epoch": epoch, **metrics}, checkpoint)

    test_loss, test_acc = evaluate(eval_net, data.test, cfg, device, precision)
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
