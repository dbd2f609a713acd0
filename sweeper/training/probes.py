"""Santurkar et al. (2018) probes of the loss landscape along the gradient, and the per-step loss hook.

At weights w with gradient g on the current batch, for each step size s = eta * lr:
  loss range          L(w - s g) over the step sizes           ("loss landscape", their fig. 4a)
  grad predictiveness ||grad L(w - s g) - g||                  (fig. 4b)
  beta-smoothness     max over s of ||grad L(w - s g) - g|| / ||s g||   (fig. 4c)

The probe evaluates copies: `torch.func.functional_call` with cloned weights and buffers, so the
model's weights, .grad, BatchNorm running statistics and the optimizer are never touched, and the
RNG states are forked and restored. It runs in train mode (batch statistics, as training sees the
loss) and in fp32: under bf16/fp16 autocast the rounding noise of two nearby gradients would
dominate their difference at small step sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import get_total_norm

from sweeper.schema.config import TrainConfig
from sweeper.training.precision import device_rng_state, set_device_rng_state
from sweeper.training.train import OnStep, Step

Criterion = Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]
LogFn = Callable[[dict[str, float], int], None]


@dataclass
class ProbeResult:
    """One probe: the loss and gradient norm at w, and per step size the loss and gradient distance."""

    steps: np.ndarray  # s = eta * lr, one per eta
    loss0: float
    grad_norm: float
    losses: np.ndarray  # L(w - s g)
    grad_dists: np.ndarray  # ||grad L(w - s g) - g||

    def metrics(self) -> dict[str, float]:
        """The logged summary: loss range, gradient predictiveness range and beta-smoothness."""
        moved = self.steps * self.grad_norm
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(moved > 0, self.grad_dists / moved, np.nan)
        return {
            "probe_loss_min": float(np.min(self.losses)),
            "probe_loss_max": float(np.max(self.losses)),
            "grad_pred_min": float(np.min(self.grad_dists)),
            "grad_pred_max": float(np.max(self.grad_dists)),
            "grad_pred_mean": float(np.mean(self.grad_dists)),
            "beta_smooth": float(np.nanmax(beta)) if np.isfinite(beta).any() else math.nan,
            "probe_grad_norm": self.grad_norm,
        }


@contextmanager
def _rng_restored(device: torch.device) -> Iterator[Callable[[], None]]:
    """Fork the CPU (and accelerator) RNG; yields a `rewind()` so every evaluation draws the same dropout."""
    accel = device.type != "cpu"
    with torch.random.fork_rng(devices=[device] if accel else [], device_type=device.type if accel else "cuda"):
        cpu, state = torch.get_rng_state(), device_rng_state(device)

        def rewind() -> None:
            torch.set_rng_state(cpu)
            set_device_rng_state(device, state)

        yield rewind


class _WithLoss(nn.Module):
    """Model plus criterion as one module: the criterion's weight penalty reads model.parameters(),
    which are the probed weights only inside functional_call, so the loss is computed in there."""

    def __init__(self, model: nn.Module, criterion: Criterion) -> None:
        super().__init__()
        self.net, self.criterion = model, criterion

    def forward(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.net(inputs), target, self.net)


def _loss_and_grad(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: Criterion,
) -> tuple[float, list[torch.Tensor]]:
    """Loss and gradient at `params`; BatchNorm updates land in fresh copies of `buffers`."""
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    scratch = {k: v.clone() for k, v in buffers.items()}
    state = {f"net.{k}": v for k, v in {**leaves, **scratch}.items()}
    loss = functional_call(_WithLoss(model, criterion), state, (x, y), strict=False)
    raw = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves.values(), raw)]
    return float(loss.detach()), grads


def probe(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: Criterion, steps: Sequence[float]
) -> ProbeResult:
    """Loss and gradient at w - s*g for each step size s; leaves model, grads, buffers and RNG as found."""
    device = x.device
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = {k: b.detach() for k, b in model.named_buffers()}
    with torch.enable_grad(), torch.autocast(device.type, enabled=False), _rng_restored(device) as rewind:
        rewind()
        loss0, g = _loss_and_grad(model, params, buffers, x, y, criterion)
        g_norm = get_total_norm(g).item()
        losses, dists = [], []
        for s in steps:
            moved = {k: p - s * gi for (k, p), gi in zip(params.items(), g)}
            rewind()
            loss, grad = _loss_and_grad(model, moved, buffers, x, y, criterion)
            dist = get_total_norm([a - b for a, b in zip(grad, g)]).item()
            losses.append(loss)
            dists.append(dist)
    return ProbeResult(np.asarray(steps, dtype=float), loss0, g_norm, np.asarray(losses), np.asarray(dists))


def make_step_hook(cfg: TrainConfig, log: LogFn) -> OnStep | None:
    """The `on_step` hook a config asks for (None without a `probe` block): step loss and probes."""
    spec = cfg.probe
    if spec is None:
        return None

    def hook(step: Step) -> None:
        metrics: dict[str, float] = {}
        if spec.step_loss:
            metrics["step_loss"] = float(step.loss)
        if (step.step - 1) % spec.every == 0:
            lr = float(step.optimizer.param_groups[0]["lr"])
            result = probe(step.model, step.x, step.y, step.criterion, [eta * lr for eta in spec.etas])
            metrics.update(result.metrics())
        # A diverged run yields inf/NaN; MLflow cannot store those faithfully, so they are left out.
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        if finite:
            log(finite, step.step)

    return hook
