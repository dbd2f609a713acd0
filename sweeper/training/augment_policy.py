"""What each augmentation preset draws, on the CPU, and the per-sample op parameters the draws become.

Draws have torchvision's distributions: RandomCrop(padding) + RandomHorizontalFlip; ColorJitter's
factor ranges and random op order, RandomAffine's angle and rounded translations, RandomErasing's
probability, scale, log-ratio and 10 attempts; AutoAugment's CIFAR-10 policy (one of 25 sub-policies,
each op with its probability, signed magnitudes with a fair sign). A whole epoch is drawn at once
from one generator, so the images do not depend on the device or the batch size.

The rows (`*_rows`) are those draws as op parameters, one row per sample, for `augment_ops`; an op a
sample skips gets its identity parameters, so running an op on a sample it does not apply to is a no-op.
"""

from __future__ import annotations

import math
from functools import cache

import torch

from sweeper.training import augment_ops as ops

# AutoAugment op families: the samples of one family go through one batched op. LUT: a fixed table
# (invert, solarize, posterize); AUTOCONTRAST and EQUALIZE compute theirs from each image.
SKIP, WARP, LUT, AUTOCONTRAST, EQUALIZE, BLEND, SHARPEN = range(7)
FAMILIES = 7

# torchvision's AutoAugmentPolicy.CIFAR10: 25 sub-policies of two (op, probability, magnitude bin)
CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}
BINS = 10


def magnitude(op: str, bin_: int | None, size: tuple[int, int]) -> float:
    """AutoAugment's unsigned magnitude of an op at a bin (torchvision's float32 tables); 0.0 for none."""
    h, w = size
    tables = {
        "ShearX": torch.linspace(0.0, 0.3, BINS),
        "ShearY": torch.linspace(0.0, 0.3, BINS),
        "TranslateX": torch.linspace(0.0, 150.0 / 331.0 * w, BINS),
        "TranslateY": torch.linspace(0.0, 150.0 / 331.0 * h, BINS),
        "Rotate": torch.linspace(0.0, 30.0, BINS),
        "Posterize": (8 - (torch.arange(BINS) / ((BINS - 1) / 4))).round().int(),
        "Solarize": torch.linspace(1.0, 0.0, BINS),
    }
    table = tables.get(op, torch.linspace(0.0, 0.9, BINS))  # Brightness, Color, Contrast, Sharpness
    return 0.0 if bin_ is None else float(table[bin_])


def _op_row(op: str, m: float, size: tuple[int, int]) -> dict[str, float]:
    """One op at signed magnitude m as AutoAugment's parameters (Python floats, as torchvision computes them)."""
    h, w = size
    if op in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(m))
        return {
            "family": WARP,
            "shear_x": shear * (op == "ShearX"),
            "shear_y": shear * (op == "ShearY"),
            "cx": -w / 2,
            "cy": -h / 2,
        }
    if op in ("TranslateX", "TranslateY"):
        return {"family": WARP, "tx": int(m) * (op == "TranslateX"), "ty": int(m) * (op == "TranslateY")}
    if op == "Rotate":
        return {"family": WARP, "angle": -(m % 360)}  # F.rotate's angle for _get_inverse_affine_matrix
    if op in ("Brightness", "Color", "Contrast"):
        kind = {"Brightness": ops.BRIGHTNESS, "Color": ops.SATURATION, "Contrast": ops.CONTRAST}[op]
        return {"family": BLEND, "blend": kind, "ratio": 1.0 + m, "alpha": 1.0 - (1.0 + m)}
    if op == "Sharpness":
        return {"family": SHARPEN, "sharp": 1.0 - (1.0 + m)}
    if op == "Posterize":
        return {"family": LUT, "mask": int(ops.posterize_mask(torch.tensor(int(m))))}
    if op == "Solarize":
        return {"family": LUT, "threshold": 255 * m}
    if op == "Invert":
        return {"family": LUT, "threshold": 0.0}
    return {"family": AUTOCONTRAST if op == "AutoContrast" else EQUALIZE}


# The parameters that leave an image as it is, for every family: a warp by the identity matrix, a
# solarize above 255 with a full mask, a brightness of 1, a sharpness of 1 (alpha = 1 - factor).
IDENTITY = {
    **{"family": SKIP, "angle": 0.0, "tx": 0, "ty": 0, "shear_x": 0.0, "shear_y": 0.0, "cx": 0.0, "cy": 0.0},
    **{"threshold": 256.0, "mask": 255},
    **{"blend": ops.BRIGHTNESS, "ratio": 1.0, "alpha": 0.0, "sharp": 0.0},
}


@cache
def variants(size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Every op a sample can get as parameter rows: row 4*policy + 2*slot + negative, and a last SKIP row."""
    rows = []
    for pair in CIFAR10_POLICY:
        for op, _, bin_ in pair:
            m = magnitude(op, bin_, size)
            rows += [IDENTITY | _op_row(op, m, size), IDENTITY | _op_row(op, -m if op in SIGNED else m, size)]
    rows.append(IDENTITY)
    column = {key: torch.tensor([row[key] for row in rows], dtype=torch.float64) for key in IDENTITY}
    shear = (column["shear_x"], column["shear_y"])
    centers = {(cx, cy) for cx, cy in zip(column["cx"].tolist(), column["cy"].tolist())}
    theta = torch.empty(len(rows), 3, 2)
    for cx, cy in centers:  # affine_theta takes one center: ShearX/Y use the corner, the rest the middle
        at = (column["cx"] == cx) & (column["cy"] == cy)
        theta[at] = ops.affine_theta(
            column["angle"][at], (column["tx"][at], column["ty"][at]), (shear[0][at], shear[1][at]), (cx, cy), size
        )
    out = {"theta": theta.view(-1, 6), "threshold": column["threshold"].float()}
    out |= {key: column[key].int() for key in ("family", "mask", "blend")}
    return out | {key: column[key].float() for key in ("ratio", "alpha", "sharp")}


def _check(generator: torch.Generator | None) -> None:
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"augmentation is drawn on the CPU; got a generator on {generator.device}")


def draw_crop_flip(n: int, pad: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """RandomCrop(size, padding=pad) and a fair horizontal flip per sample: offsets dy, dx in 0..2*pad."""
    _check(generator)
    dy, dx = torch.randint(2 * pad + 1, (2, n), generator=generator)
    return {"dy": dy, "dx": dx, "flip": torch.randint(2, (n,), generator=generator)}


def draw_autoaugment(n: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """AutoAugment(CIFAR10) per sample: its sub-policy, whether each op applies, and each magnitude's sign."""
    _check(generator)
    policy = torch.randint(len(CIFAR10_POLICY), (n,), generator=generator)
    chance = torch.tensor([[p for _, p, _ in pair] for pair in CIFAR10_POLICY])
    applied = torch.rand(n, 2, generator=generator) <= chance[policy]  # torchvision: rand() <= probability
    negative = torch.rand(n, 2, generator=generator) <= 0.5
    return {"policy": policy, "applied": applied, "negative": negative}


def autoaugment_rows(draws: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Per-sample op parameters of AutoAugment draws: for slot s in 0, 1, rows named `<param><s>`."""
    table = variants(size)
    skip = len(table["family"]) - 1
    rows: dict[str, torch.Tensor] = {}
    for slot in (0, 1):
        row = draws["policy"] * 4 + 2 * slot + draws["negative"][:, slot].long()
        row = torch.where(draws["applied"][:, slot], row, skip)
        rows |= {f"{key}{slot}": values[row] for key, values in table.items()}
    return rows


def draw_strong(n: int, size: tuple[int, int], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """ColorJitter(0.2, 0.2, 0.2), RandomAffine(15, translate=(0.1, 0.1)), RandomErasing(0.25) per sample."""
    _check(generator)
    h, w = size
    draws = {"order": torch.rand(n, 3, generator=generator).argsort(dim=1)}  # a uniform order of the 3 ops
    draws["factor"] = torch.empty(n, 3).uniform_(0.8, 1.2, generator=generator)  # brightness, contrast, saturation
    draws["angle"] = torch.empty(n).uniform_(-15.0, 15.0, generator=generator)
    for key, extent in (("tx", w), ("ty", h)):  # round half to even, as Python's round()
        draws[key] = torch.empty(n).uniform_(-0.1 * extent, 0.1 * extent, generator=generator).round().int()
    return draws | _draw_erase(n, size, generator)


def _draw_erase(n: int, size: tuple[int, int], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """RandomErasing(p=0.25, scale=(0.02, 0.33), ratio=(0.3, 3.3)): the first of 10 tries that fits, else none."""
    h, w = size
    area = h * w * torch.empty(n, 10).uniform_(0.02, 0.33, generator=generator).double()
    log_ratio = torch.log(torch.tensor([0.3, 3.3]))
    aspect = torch.exp(torch.empty(n, 10).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=generator))
    eh, ew = (area * aspect).sqrt().round().long(), (area / aspect).sqrt().round().long()
    fits = (eh < h) & (ew < w)
    first = fits.int().argmax(dim=1, keepdim=True)
    erased = (torch.rand(n, generator=generator) < 0.25) & fits.any(dim=1)  # RandomErasing: rand() >= p skips
    eh = torch.where(erased, eh.gather(1, first)[:, 0], 0)
    ew = torch.where(erased, ew.gather(1, first)[:, 0], 0)
    corner = torch.rand(2, n, dtype=torch.float64, generator=generator)
    return {"i": (corner[0] * (h - eh + 1)).long(), "j": (corner[1] * (w - ew + 1)).long(), "h": eh, "w": ew}


def strong_rows(draws: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Per-sample op parameters of `strong` draws: blend stage t's kind/ratio/alpha, the warp, the erased box."""
    rows: dict[str, torch.Tensor] = {}
    for t in range(3):
        kind = draws["order"][:, t]
        ratio = draws["factor"].gather(1, kind[:, None])[:, 0]
        rows |= {f"kind{t}": kind, f"ratio{t}": ratio, f"alpha{t}": (1.0 - ratio.double()).float()}
    zero = torch.zeros_like(draws["angle"])
    translate = (draws["tx"], draws["ty"])
    rows["theta"] = ops.affine_theta(draws["angle"], translate, (zero, zero), (0.0, 0.0), size).reshape(-1, 6)
    return rows | {key: draws[key] for key in ("i", "j", "h", "w")}
