"""An epoch of training batches: the order and every sample's augmentation drawn at once, then sliced per step."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from sweeper.schema.config import TrainConfig
from sweeper.training.augment import alternating_flips, apply, draw_params, normalize, plan_from_params
from sweeper.training.device import non_blocking


def epoch_batches(
    cfg: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    steps: int,
    fmt: torch.memory_format,
    epoch: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (normalised augmented images, labels) in a seeded random order, on the images' device.

    The epoch's order and every sample's augmentation are drawn up front on the CPU from the run's
    generator (so they depend on the seed, not on the device) and reach the device in one copy
    each; a step then slices them: no host-device sync, the GPU never waits for the host.
    """
    device, bs, n = labels.device, cfg.data.batch_size, len(labels)
    used = steps * bs if n >= bs else n
    order = torch.randperm(n, generator=generator)[:used]
    draws = draw_params(cfg.data.augment, used, generator)
    if cfg.data.augment == "altflip":
        draws["flip"] = alternating_flips(order, n, epoch, cfg.seed)
    plan = plan_from_params(cfg.data.augment, used, draws, batch_size=bs).to(device)
    order = order.to(device, non_blocking=non_blocking(device))
    for start in range(0, used, bs):
        i = order[start : start + bs]
        x = apply(images[i], plan, start, start + len(i))
        yield normalize(x, cfg.data.normalize).contiguous(memory_format=fmt), labels[i]
