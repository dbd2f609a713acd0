"""A trained network's loss and accuracy on a split: large batches, inference mode, optional test-time views."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sweeper.schema.config import TrainConfig
from sweeper.training.augment import normalize
from sweeper.training.data import Split
from sweeper.training.device import input_format, non_blocking
from sweeper.training.precision import autocast


@torch.inference_mode()
def evaluate(
    model: nn.Module, split: Split, cfg: TrainConfig, device: torch.device, precision: str
) -> dict[str, float]:
    """{"loss": mean cross-entropy, "acc": accuracy} of a split, in eval mode, in large batches; `tta` adds each mirror image."""
    if len(split.labels) == 0:
        return {"loss": math.nan, "acc": math.nan}
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    fmt, copy_async = input_format(cfg, device), non_blocking(device)
    for start in range(0, len(split.labels), cfg.data.eval_batch_size):
        x = split.images[start : start + cfg.data.eval_batch_size].to(device, non_blocking=copy_async)
        y = split.labels[start : start + cfg.data.eval_batch_size].to(device, non_blocking=copy_async)
        x = normalize(x, cfg.data.normalize).contiguous(memory_format=fmt)
        with autocast(device, precision):
            logits = _views(model, x, cfg, fmt)
        total_loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = len(split.labels)
    return {"loss": total_loss.item() / n, "acc": correct.item() / n}


def _views(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, fmt: torch.memory_format) -> torch.Tensor:
    """Logits of a batch, averaged over test-time views: the image and its mirror (`tta`), and with
    `tta_translate` also both shifted one pixel diagonally (reflect padding), weighted as the 94% record does."""

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        logits = model(v).float()
        if not cfg.tta:
            return logits
        # a mirrored image is as likely as the original: average both predictions
        return (logits + model(v.flip(-1).contiguous(memory_format=fmt)).float()) / 2

    plain = mirrored(x)
    if not cfg.tta_translate:
        return plain
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2:]
    shifted = [padded[..., :h, :w].contiguous(memory_format=fmt), padded[..., 2:, 2:].contiguous(memory_format=fmt)]
    return 0.5 * plain + 0.25 * (mirrored(shifted[0]) + mirrored(shifted[1]))
