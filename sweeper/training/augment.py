"""Augmentation presets and normalisation, applied to whole uint8 batches on the training device.

Every preset is batched tensor ops with per-sample parameters (`augment_ops`). The parameters of an
epoch are drawn at once on the CPU from the run's generator (`draw_plan`), moved to the device in one
copy, and each batch is augmented from its slice of them (`apply`) without a host-device sync, so
the images depend on the seed alone: not on the device, the batch size or the number of workers.

    plan = draw_plan(preset, n, generator, batch_size).to(device)   # once per epoch
    x = apply(images[index], plan, start, stop)                     # samples start:stop of the epoch
"""

from __future__ import annotations

from functools import cache

import torch

from sweeper.catalogue import AUGMENTS, NORMALIZATIONS
from sweeper.errors import UserError
from sweeper.training import augment_ops as ops
from sweeper.training import augment_policy as policy
from sweeper.training.augment_plan import AugmentPlan, PlanSlice, pack

PAD = 4  # the classic CIFAR crop: 4 zero pixels each side, then a random 32x32 window
# The presets that crop and flip, and their padding (every preset but `none`). `translate`: shifts of
# at most 2 pixels, as the fast CIFAR-10 records use; on the `fast` recipe (6 epochs) it gave 89.0%
# test accuracy against 88.3% with the classic 4 (one seed each).
PADS = {"weak": PAD, "translate": 2, "autoaugment": PAD, "strong": PAD, "altflip": 2}
REFLECT = ("altflip",)  # pads by mirroring the image's border (the 94% record's), the others with zeros
PRESETS = ("none", *PADS)  # what this module implements: tests/test_catalogue.py holds it to catalogue.AUGMENTS
SIZE = (32, 32)  # CIFAR images: the size plans are drawn for


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise UserError(AUGMENTS.unknown(preset))


def draw_params(
    preset: str, n: int, generator: torch.Generator | None = None, size: tuple[int, int] = SIZE
) -> dict[str, torch.Tensor]:
    """The random draws of a preset for n images of `size`, on the CPU, from the generator (else torch's global RNG)."""
    _check_preset(preset)
    if preset == "none":
        return {}
    draws = policy.draw_crop_flip(n, PADS[preset], generator)
    if preset == "strong":
        draws |= policy.draw_strong(n, size, generator)
    elif preset == "autoaugment":
        draws |= policy.draw_autoaugment(n, generator)
    return draws


def plan_from_params(
    preset: str, n: int, draws: dict[str, torch.Tensor], batch_size: int | None = None, size: tuple[int, int] = SIZE
) -> AugmentPlan:
    """The plan of a preset's draws (`draw_params`), grouped for batches of batch_size (default: one batch)."""
    rows: dict[str, torch.Tensor] = {key: draws[key] for key in ("dy", "dx", "flip") if key in draws}
    if preset == "strong":
        rows |= policy.strong_rows(draws, size)
    elif preset == "autoaugment":
        rows |= policy.autoaugment_rows(draws, size)
        return pack(preset, n, size, rows, batch_size, ("family0", "family1"), policy.FAMILIES)
    return pack(preset, n, size, rows, batch_size)


def alternating_flips(indices: torch.Tensor, n: int, epoch: int, seed: int) -> torch.Tensor:
    """`altflip`'s flips (the 94% record's) for images `indices` of n: one random bit per image for the run,
    inverted every second epoch, so any two consecutive epochs show each image both ways (independent
    random flips show half of them the same way twice). From the seed alone: a resume needs no state."""
    bits = torch.randint(2, (n,), generator=torch.Generator().manual_seed(seed + 2**32))  # not the run's stream
    return bits[indices] ^ (1 - epoch % 2)  # epoch 1: the bits; epoch 2: their opposites; ...


def draw_plan(
    preset: str,
    n: int,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    size: tuple[int, int] = SIZE,
) -> AugmentPlan:
    """One epoch's augmentation of n images, drawn on the CPU; batch_size: the slices `apply` will mostly take."""
    return plan_from_params(preset, n, draw_params(preset, n, generator, size), batch_size, size)


def apply(x: torch.Tensor, plan: AugmentPlan, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Augment x, the samples start:stop of the plan's epoch, on x's device (the plan's); no host-device sync."""
    stop = start + len(x) if stop is None else stop
    if x.dtype != torch.uint8 or x.ndim != 4 or len(x) != stop - start:
        raise ValueError(f"apply expects {stop - start} uint8 [B,C,H,W] images, got {x.dtype} {tuple(x.shape)}")
    if plan.device != x.device:
        raise ValueError(f"the plan is on {plan.device} and the images on {x.device}: move the plan once per epoch")
    if tuple(x.shape[-2:]) != plan.size:
        raise ValueError(f"the plan was drawn for {plan.size[0]}x{plan.size[1]} images, got {tuple(x.shape[-2:])}")
    if plan.preset == "none" or len(x) == 0:
        return x
    p = plan.slice(start, stop)
    if plan.preset == "autoaugment":
        out = _autoaugment(x, p, PADS[plan.preset])
    else:
        out = ops.crop_flip(x, p["dy"], p["dx"], p["flip"], PADS[plan.preset], reflect=plan.preset in REFLECT)
    if plan.preset == "strong":
        out = _strong(out, p)
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _strong(x: torch.Tensor, p: PlanSlice) -> torch.Tensor:
    """ColorJitter (three blends in each sample's order), RandomAffine, RandomErasing."""
    jittered: torch.Tensor = x
    for t in range(3):  # float32 between the stages: it holds the same integers the uint8 casts would
        jittered = ops.blend(jittered, p[f"kind{t}"], p[f"ratio{t}"], p[f"alpha{t}"])
    x = ops.warp(ops.to_uint8(jittered), p["theta"].reshape(-1, 3, 2))
    return ops.erase(x, p["i"], p["j"], p["h"], p["w"])


def _autoaugment(x: torch.Tensor, p: PlanSlice, pad: int) -> torch.Tensor:
    """Crop and flip, then each of a sub-policy's two slots: one op family at a time, in one batched op.

    A planned batch is reordered so each slot's families are contiguous runs (the plan's orders):
    a family's op works on a view, and one gather at the end restores the sample order.
    """
    if p.bounds is None:  # not a planned batch: every family's op on every sample, a no-op on the others
        x = ops.crop_flip(x, p["dy"], p["dx"], p["flip"], pad)
        for slot in (0, 1):
            for family in range(policy.SKIP + 1, policy.FAMILIES):
                x = _family_op(family, x, p, slot, mixed=True)
        return x
    params = p
    for slot in (0, 1):
        order = p[f"order{slot}"]  # positions are per batch, not per sample: read from p, not `params`
        x, params = x.index_select(0, order), params.take(order)
        if slot == 0:
            x = ops.crop_flip(x, params["dy"], params["dx"], params["flip"], pad)
        parts = [
            x[a:b] if g == policy.SKIP else _family_op(g, x[a:b], params.part(a, b), slot, mixed=False)
            for g, a, b in p.groups(slot)
        ]
        x = torch.cat(parts)
    return x.index_select(0, p["unsort"])


def _family_op(family: int, x: torch.Tensor, part: PlanSlice, s: int, mixed: bool) -> torch.Tensor:
    """One AutoAugment op family on samples x with parameters `part`, for slot s.

    The rows of samples outside the family hold identity parameters, and where samples are `mixed`
    AUTOCONTRAST/EQUALIZE check the family row: on any sample, a family's op changes only its own.
    """
    if family == policy.WARP:
        return ops.warp(x, part[f"theta{s}"].reshape(-1, 3, 2))
    if family == policy.LUT:
        return ops.apply_lut(x, ops.static_lut(part[f"threshold{s}"], part[f"mask{s}"]))
    if family in (policy.AUTOCONTRAST, policy.EQUALIZE):
        op = ops.autocontrast if family == policy.AUTOCONTRAST else ops.equalize
        return op(x, part[f"family{s}"] == family if mixed else None)
    if family == policy.BLEND:
        return ops.to_uint8(ops.blend(x, part[f"blend{s}"], part[f"ratio{s}"], part[f"alpha{s}"]))
    return ops.sharpness(x, part[f"sharp{s}"])


def augment_batch(x: torch.Tensor, preset: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a uint8 [B,3,H,W] batch with a preset; same dtype, shape, device and memory format."""
    _check_preset(preset)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"augment_batch expects a uint8 [B,C,H,W] batch, got {x.dtype} {tuple(x.shape)}")
    if preset == "none":
        return x
    return apply(x, draw_plan(preset, len(x), generator, size=(x.shape[-2], x.shape[-1])).to(x.device))


@cache
def _normalize_constants(preset: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(255 * mean, 255 * std) per channel as float32 [C,1,1] on a device, built once."""
    info = NORMALIZATIONS.get(preset)
    mean, std = info.mean, info.std
    shift = torch.tensor(mean).mul_(255).view(-1, 1, 1).to(device)
    scale = torch.tensor(std).mul_(255).view(-1, 1, 1).to(device)
    return shift, scale


def normalize(x: torch.Tensor, preset: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels -> (x/255 - mean) / std per channel in dtype, keeping device and memory format."""
    if preset not in NORMALIZATIONS:
        raise UserError(NORMALIZATIONS.unknown(preset))
    # computed in float32 then cast, so half-precision outputs round once, not at every step: the
    # constants are float32 whatever the output dtype, hence cached by (preset, device) alone
    shift, scale = _normalize_constants(preset, x.device)
    return ((x.float() - shift) / scale).to(dtype)
