"""The in-memory dataset types every stage shares: CIFAR-10's classes, a Split, the three splits of a run."""

from __future__ import annotations

import hashlib
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
    source: str = "unknown"  # the cache's description, e.g. "CIFAR-10 (JPEG) from /data/cifar10-jpeg.tar.gz"
    digest: str = ""  # of the full cached arrays the splits were cut from: same digest, same images

    @property
    def name(self) -> str:
        """The dataset as tables and MLflow's Dataset column name it."""
        return dataset_name(self.source)


# What a table may call its data; a cache's description starts with one of them.
DATASET_NAMES = ("CIFAR-10 (JPEG)", "CIFAR-10", "synthetic")


def dataset_name(description: str) -> str:
    """'CIFAR-10' (the original, lossless), 'CIFAR-10 (JPEG)', 'synthetic', else 'unknown'."""
    return next((n for n in DATASET_NAMES if description.startswith(n)), "unknown")


def digest(train: Split, test: Split) -> str:
    """First 16 hex digits of the sha256 of the images and labels: which pixels a run saw, not where from."""
    h = hashlib.sha256()
    for tensor in (train.images, train.labels, test.images, test.labels):
        h.update(tensor.contiguous().numpy().data)  # no copy: the buffer itself
    return h.hexdigest()[:16]


def as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """A Split of numpy arrays (uint8 images, integer labels)."""
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64)))
