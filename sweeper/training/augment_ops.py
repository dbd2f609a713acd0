"""Batched augmentation ops on uint8 [B,3,H,W] images, each sample with its own parameters.

Every op matches torchvision.transforms.v2.functional's op on a uint8 tensor image, image by image,
given the same parameters: the same float32 operations in the same order, batched. Parameters are
tensors on the batch's device, one value per sample; nothing here reads a value back to the host.

Exactness: crop/flip, erase, the warps, the look-up-table ops (invert, solarize, posterize,
autocontrast, equalize) are exact by construction. The blends (brightness, contrast, saturation,
sharpness) need torchvision's `add_(other, alpha=a)` with a per-sample alpha, which torch has not:
`torch.addcmul` stands in, exact where both are one fused multiply-add (the x86 CPU kernels: the
tests check it bit for bit; CUDA's compiler fuses both too, unchecked here). A build that rounds
the product apart in one and not the other differs by one intensity level on a rare pixel: the
result is truncated to uint8, and a float32 ulp can cross an integer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Blend kinds, in ColorJitter's `fn_idx` numbering: what the image is blended with.
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    """[B] -> [B,1,1,1], to broadcast one value per sample over an image batch."""
    return values.view(-1, 1, 1, 1)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float32 in [0, 255] -> uint8, truncating as `.to(torch.uint8)` does, through int16: 5x faster on a CPU."""
    return x.to(torch.int16).to(torch.uint8)


def crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int, reflect: bool = False
) -> torch.Tensor:
    """Crop each sample's window at (dy, dx) of its padded image (zeros, or its mirror image at the border with
    `reflect`, as F.pad's "reflect"), mirrored where flip != 0, as one gather."""
    if reflect:
        return _crop_flip_reflect(x, dy, dx, flip, pad)
    b, c, h, w = x.shape
    padded = x.new_zeros(b, c, h + 2 * pad, w + 2 * pad)
    padded[:, :, pad : pad + h, pad : pad + w] = x
    # int32 arithmetic (half the bytes of int64), widened once for gather
    rows = (dy.int()[:, None] + torch.arange(h, device=x.device, dtype=torch.int32)) * (w + 2 * pad)
    across = torch.arange(w, device=x.device, dtype=torch.int32)
    # a flipped sample reads its window right to left: crop and mirror in the same index
    cols = dx.int()[:, None] + torch.where(flip.bool()[:, None], across.flip(0), across)
    index = (rows[:, :, None] + cols[:, None, :]).view(b, 1, h * w).long().expand(b, c, h * w)
    return padded.view(b, c, -1).gather(2, index).view(b, c, h, w)


def _mirror_index(i: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-padding's source index of i in [-pad, size + pad): -1 -> 1, size -> size - 2."""
    i = i.abs()
    return torch.where(i > size - 1, 2 * (size - 1) - i, i)


def _crop_flip_reflect(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """crop_flip with reflect padding: the source pixel of each output pixel, read from x itself (no padded copy)."""
    b, c, h, w = x.shape
    rows = _mirror_index(dy.int()[:, None] - pad + torch.arange(h, device=x.device, dtype=torch.int32), h) * w
    across = torch.arange(w, device=x.device, dtype=torch.int32)
    cols = _mirror_index(dx.int()[:, None] - pad + torch.where(flip.bool()[:, None], across.flip(0), across), w)
    index = (rows[:, :, None] + cols[:, None, :]).view(b, 1, h * w).long().expand(b, c, h * w)
    return x.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def blend_weights(factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ratio, 1 - ratio) in float32 for a blend factor, the 1 - ratio taken in float64 as torchvision's Python does."""
    return factor.float(), (1.0 - factor.double()).float()


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """torchvision's luma of a [B,3,H,W] image as float32 [B,1,H,W], floored as it does for integer images."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3).floor_()


def blend(x: torch.Tensor, kind: torch.Tensor, ratio: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast or saturation per sample (`kind`), as float32 holding the uint8 result.

    x is uint8 or float32 holding integers, so a chain of blends (ColorJitter) skips the casts.
    Each is torchvision's `_blend(x, other, ratio)`: x*ratio + other*alpha, clamped and truncated,
    with other 0 (brightness: x*ratio + 0 is its plain multiply), the mean luma or the luma.
    """
    x = x if x.is_floating_point() else x.float()  # the same products; uint8 * float32 is 20x slower on CPU
    luma = grayscale(x)
    mean = luma.mean(dim=(-3, -2, -1), keepdim=True)  # integers summing below 2**24, / 1024: exact in any order
    kind = _per_sample(kind)
    other = torch.where(kind == SATURATION, luma, mean).masked_fill_(kind == BRIGHTNESS, 0.0)
    out = torch.addcmul(x.mul(_per_sample(ratio)), other, _per_sample(alpha))
    return out.clamp_(0, 255).floor_()  # floor is truncation here, and vectorised where trunc is not


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """F.adjust_brightness per sample."""
    return to_uint8(blend(x, torch.full_like(factor, BRIGHTNESS, dtype=torch.int32), *blend_weights(factor)))


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """F.adjust_contrast per sample."""
    return to_uint8(blend(x, torch.full_like(factor, CONTRAST, dtype=torch.int32), *blend_weights(factor)))


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """F.adjust_saturation per sample (AutoAugment's Color)."""
    return to_uint8(blend(x, torch.full_like(factor, SATURATION, dtype=torch.int32), *blend_weights(factor)))


def sharpness(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """F.adjust_sharpness per sample, alpha = 1 - sharpness_factor: blend with a 3x3 blur inside the border.

    torchvision rounds conv2d(x, [[1,1,1],[1,5,1],[1,1,1]] / 13); that value is k/13 for an integer k,
    never within float error of a half, so rounding k/13 from exact integer sums is the same blur,
    at a fraction of a depthwise convolution's cost on a CPU.
    """
    out = x.float()
    rows = out[..., :-2, :] + out[..., 1:-1, :] + out[..., 2:, :]
    inner = out[..., 1:-1, 1:-1]
    k = (rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]).add_(inner, alpha=4)
    blurred = k.div_(13).round_()
    inner.copy_(torch.addcmul(inner, blurred.sub_(inner), _per_sample(alpha)))
    return to_uint8(out.clamp_(0, 255))


def affine_theta(
    angle: torch.Tensor,
    translate: tuple[torch.Tensor, torch.Tensor],
    shear: tuple[torch.Tensor, torch.Tensor],
    center: tuple[float, float],
    size: tuple[int, int],
) -> torch.Tensor:
    """Per-sample float32 [N,3,2] sampling matrices of torchvision's affine (scale 1), for `warp`.

    Center and translations in pixels, center relative to the image centre; angles in degrees.
    `_get_inverse_affine_matrix`'s float64 steps, vectorised (torch's float64 cos/sin may differ from
    libm's by an ulp, far below the float32 rounding that follows), then `_affine_grid`'s rescaling.
    """
    degree = math.pi / 180.0  # math.radians multiplies by this constant
    rot, sx, sy = angle.double() * degree, shear[0].double() * degree, shear[1].double() * degree
    tan_sx = torch.tan(sx)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -(a * tan_sx + torch.sin(rot))
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = torch.cos(rot) - c * tan_sx
    cx_tx, cy_ty = center[0] + translate[0].double(), center[1] + translate[1].double()
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = center[0] - m0 * cx_tx - m1 * cy_ty
    m5 = center[1] - m3 * cx_tx - m4 * cy_ty
    theta = torch.stack([m0, m1, m2, m3, m4, m5], dim=-1).float().view(-1, 2, 3)
    h, w = size
    return theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], device=theta.device)


def _grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """torchvision's `_affine_grid` for each sample: the [B,H,W,2] sampling points of its matrix.

    torchvision multiplies [x, y, 1] by the matrix with a bmm, which on some CPUs computes
    (x*t0 + y*t1) + t2 unfused (bit for bit the same) and elsewhere with fused multiply-adds (two ulps
    apart, the tests check). The same float ops, elementwise on
    per-sample rows and columns, cost a fraction of a batched bmm, give the same grid on every device,
    and are immune to TF32 matmuls, which would move sampling points by up to 1/100 of a pixel.
    """
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=theta.device)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=theta.device)
    across = (xs * theta[:, 0, :, None]).unsqueeze(2)  # [B,2,1,W]: x * (t00, t01)
    down = (ys * theta[:, 1, :, None]).unsqueeze(3)  # [B,2,H,1]: y * (t10, t11)
    return (across + down).add_(theta[:, 2, :, None, None]).permute(0, 2, 3, 1)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """F.affine / F.rotate per sample, nearest neighbour, outside pixels 0; theta from `affine_theta`.

    torchvision's grid and grid_sample, run once on an image of pixel numbers instead of on each
    channel: the pixel it picks is torchvision's, gathered as uint8. (On a GPU, grid_sample's kernel
    may round a point exactly halfway between two pixels the other way, on a rare pixel.)
    """
    b, c, h, w = x.shape
    # pixel numbers from 1; the zero padding outside the image then reads as 0, an all-zero pixel
    numbers = torch.arange(1, h * w + 1, device=x.device, dtype=torch.float32).view(1, 1, h, w).expand(b, 1, h, w)
    source = F.grid_sample(numbers, _grid(theta, h, w), mode="nearest", padding_mode="zeros", align_corners=False)
    padded = torch.cat([x.new_zeros(b, c, 1), x.reshape(b, c, h * w)], dim=2)
    index = source.view(b, 1, h * w).long().expand(b, c, h * w)
    return padded.gather(2, index).view(b, c, h, w)


def erase(x: torch.Tensor, i: torch.Tensor, j: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """F.erase with value 0 per sample: rows i:i+h, columns j:j+w; h = 0 erases nothing."""
    rows = torch.arange(x.shape[-2], device=x.device)
    cols = torch.arange(x.shape[-1], device=x.device)
    i, j, h, w = (v.view(-1, 1, 1) for v in (i, j, h, w))
    inside = (rows[:, None] >= i) & (rows[:, None] < i + h) & (cols >= j) & (cols < j + w)
    return x.masked_fill(inside.unsqueeze(1), 0)


def static_lut(threshold: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N,1,256] uint8 tables: solarize at a float32 threshold (0: invert, 256: none), then AND a posterize mask."""
    v = torch.arange(256, device=threshold.device, dtype=torch.uint8)
    # uint8 >= a Python float compares in float32 in torch: so do we, with the threshold rounded to float32
    solarized = torch.where(v.float() >= threshold.float()[:, None], 255 - v, v)
    return (solarized & mask.to(torch.uint8)[:, None]).unsqueeze(1)


def apply_lut(x: torch.Tensor, lut: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Map each pixel through its sample's (and channel's, for [B,C,256]) table; index: x as int64 [B,C,H*W]."""
    b, c, h, w = x.shape
    index = x.reshape(b, c, h * w).long() if index is None else index
    return lut.expand(b, c, 256).gather(2, index).view(b, c, h, w)


def _identity_where_off(lut: torch.Tensor, enabled: torch.Tensor | None) -> torch.Tensor:
    """The tables, with the identity for the samples where `enabled` is False."""
    if enabled is None:
        return lut
    identity = torch.arange(256, device=lut.device, dtype=torch.uint8)
    return torch.where(enabled.bool().view(-1, 1, 1), lut, identity)


def autocontrast(x: torch.Tensor, enabled: torch.Tensor | None = None) -> torch.Tensor:
    """F.autocontrast (where `enabled`, per sample): each channel stretched from its own min..max to 0..255."""
    low = x.amin(dim=(-2, -1)).float()
    high = x.amax(dim=(-2, -1)).float()
    flat = high == low
    inv_scale = torch.where(flat, 1.0, (high - low).mul_(1.0 / 255))
    low = torch.where(flat, 0.0, low)
    v = torch.arange(256, device=x.device, dtype=torch.float32)
    # the table holds torchvision's per-pixel float ops on each of the 256 values
    lut = (v - low[..., None]).div_(inv_scale[..., None]).clamp_(0, 255).to(torch.uint8)
    return apply_lut(x, _identity_where_off(lut, enabled))


def equalize(x: torch.Tensor, enabled: torch.Tensor | None = None) -> torch.Tensor:
    """F.equalize (where `enabled`, per sample): PIL's scheme in integers; a channel that cannot equalize stays."""
    b, c, h, w = x.shape
    index = x.reshape(b, c, h * w).long()
    # scatter_add, not bincount: bincount reads its output size back from a CUDA device
    hist = torch.zeros(b, c, 256, dtype=torch.int32, device=x.device)
    hist.scatter_add_(2, index, torch.ones_like(index, dtype=torch.int32))  # an expanded source is 2x slower
    cum = hist.cumsum(dim=-1, dtype=torch.int32)
    last = hist.gather(-1, cum.argmax(dim=-1, keepdim=True))  # the count of the brightest value present
    step = (h * w - last).div_(255, rounding_mode="floor")
    # (cum + step // 2) // step in float32, exactly: a/b is an integer or 1/b short of the next one, a
    # relative gap of 1/a > 2**-24 that float rounding cannot close; int64 division is 3x slower on a CPU
    lut = (cum[..., :-1] + step // 2).float().div_(step.clamp(min=1)).floor_().clamp_(0, 255)
    lut = to_uint8(torch.cat([torch.zeros_like(lut[..., :1]), lut], dim=-1))
    enabled = step[..., 0] != 0 if enabled is None else (step[..., 0] != 0) & enabled.bool()[:, None]
    identity = torch.arange(256, device=x.device, dtype=torch.uint8)
    return apply_lut(x, torch.where(enabled[..., None], lut, identity), index)


def invert(x: torch.Tensor) -> torch.Tensor:
    """F.invert."""
    return solarize(x, torch.zeros(len(x), device=x.device))


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """F.solarize per sample: invert the pixels >= threshold (float32, as torch compares uint8 with a float)."""
    return apply_lut(x, static_lut(threshold, torch.full((len(x),), 255, device=x.device)))


def posterize_mask(bits: torch.Tensor) -> torch.Tensor:
    """The AND mask that keeps a uint8 pixel's top `bits` bits (0..8), as F.posterize does."""
    return (255 << (8 - bits.long())) & 255


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """F.posterize per sample."""
    never = torch.full((len(x),), 256.0, device=x.device)
    return apply_lut(x, static_lut(never, posterize_mask(bits)))
