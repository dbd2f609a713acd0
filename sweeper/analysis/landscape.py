"""2D loss surfaces around trained weights with filter-normalised random directions (Li et al. 2018).

The surface is L(w + a*d1 + b*d2) on an evenly spaced (a, b) grid over a fixed data subset, in
eval mode (BatchNorm uses the checkpoint's running statistics, as Li et al. evaluate). Each
direction is Gaussian noise rescaled filter by filter to the norm of the matching filter of w, so
that surfaces of networks with different weight scales are comparable; 1-D parameters (BatchNorm
weights and biases, every bias) get a zero direction, and buffers are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Direction = dict[str, torch.Tensor]


@dataclass
class Surface:
    """Loss and accuracy on a grid: loss[i, j] is at (alphas[j], betas[i]), plot-ready for contour z."""

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    acc: np.ndarray
    images: int
    label: str = ""


@dataclass
class Cost:
    """What a surface costs before it runs: grid points, image forward passes, batches."""

    points: int
    images: int
    forward_images: int
    batches: int

    def __str__(self) -> str:
        return (
            f"{self.points:,} grid points x {self.images:,} images = {self.forward_images:,} image forward passes "
            f"({self.batches:,} batches)"
        )


def surface_cost(grid: int, images: int, batch: int, checkpoints: int = 1) -> Cost:
    """The number of forward passes a set of surfaces needs (each point sees every image once)."""
    points = checkpoints * grid * grid
    return Cost(points, images, points * images, points * -(-images // batch))


def random_direction(model: nn.Module, generator: torch.Generator) -> Direction:
    """A filter-normalised Gaussian direction: each filter (slice along dim 0) has its weights' norm."""
    direction: Direction = {}
    for name, p in model.named_parameters():
        if p.ndim <= 1:
            direction[name] = torch.zeros_like(p)
            continue
        # drawn on the CPU from the seeded generator so a seed gives the same direction on any device
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype)
        dims = tuple(range(1, p.ndim))
        norm = torch.linalg.vector_norm
        scale = norm(p.detach(), dim=dims, keepdim=True) / norm(d, dim=dims, keepdim=True).clamp_min(1e-10)
        direction[name] = d * scale
    return direction


@torch.inference_mode()
def evaluate_at(
    model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch: int
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model with `params` swapped in, over normalised x."""
    total, correct = 0.0, 0
    for start in range(0, len(y), batch):
        logits = functional_call(model, params, (x[start : start + batch],), strict=False).float()
        target = y[start : start + batch]
        total += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return total / len(y), correct / len(y)


def loss_surface(
    model: nn.Module,
    directions: tuple[Direction, Direction],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    grid: int = 21,
    span: float = 1.0,
    batch: int = 500,
    on_point: Callable[[], None] | None = None,
    label: str = "",
) -> Surface:
    """L(w + a d1 + b d2) for a, b in linspace(-span, span, grid), over the images x (normalised)."""
    was_training = model.training
    model.eval()
    base = {k: p.detach() for k, p in model.named_parameters()}
    d1, d2 = directions
    coords = np.linspace(-span, span, grid)
    loss = np.empty((grid, grid))
    acc = np.empty((grid, grid))
    try:
        for i, b in enumerate(coords):
            for j, a in enumerate(coords):
                params = {k: w + float(a) * d1[k] + float(b) * d2[k] for k, w in base.items()}
                loss[i, j], acc[i, j] = evaluate_at(model, params, x, y, batch)
                if on_point is not None:
                    on_point()
    finally:
        model.train(was_training)
    return Surface(coords, coords.copy(), loss, acc, images=len(y), label=label)
