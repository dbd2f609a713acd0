"""The in-memory dataset types every stage shares: CIFAR-10's classes, a Split, the three splits of a run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclass
class Split:
    """Images as uint8 [N,3,32,32] contiguous NCHW, labels as int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class CifarData:
    """The three splits one run trains, selects and reports on."""

    train: Split
    val: Split
    test: Split
    source: str = "unknown"


def as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """A Split of numpy arrays (uint8 images, integer labels)."""
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64)))
