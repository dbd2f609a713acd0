"""Your own network for sweeper: any nn.Module class (or a function returning one).

sweeper calls it with the spec's `model:` keys as keyword arguments, plus `num_classes` and
`activation` when the signature takes them; `activation` is a function returning a fresh
activation module (the spec's `activation:`), so one spec can sweep activations over this net.
"""

from collections.abc import Callable

import torch
from torch import nn


class TinyNet(nn.Module):
    """Two conv blocks and a linear head: `width` channels, then twice as many."""

    def __init__(self, width: int = 16, num_classes: int = 10, activation: Callable[[], nn.Module] = nn.ReLU):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), activation(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), activation(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


class Swish(nn.Module):
    """Your own activation: x * sigmoid(beta * x) with a learned beta (one per call site)."""

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)
