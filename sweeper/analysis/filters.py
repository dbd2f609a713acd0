"""First-layer kernels and the feature maps of one image after the first convolution (report 002 fig. 2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from plotly.colors import hex_to_rgb, sequential
from torch import nn

from sweeper.models import first_conv
from sweeper.plots import image_grid
from sweeper.training.augment import normalize


def first_layer_filters(model: nn.Module) -> np.ndarray:
    """The first conv's weights as float32 [out, in, k, k] on the CPU."""
    return first_conv(model).weight.detach().float().cpu().numpy().copy()


@torch.no_grad()
def feature_maps(model: nn.Module, image_uint8_chw: np.ndarray | torch.Tensor, normalize_preset: str) -> np.ndarray:
    """The first conv's output [channels, H, W] for one uint8 [3,H,W] image, in eval mode, no grad."""
    conv = first_conv(model)
    image = torch.as_tensor(np.asarray(image_uint8_chw), dtype=torch.uint8)
    if image.ndim != 3:
        raise ValueError(f"feature_maps expects one uint8 [C,H,W] image, got shape {tuple(image.shape)}")
    weight = conv.weight
    x = normalize(image[None].to(weight.device), normalize_preset).to(weight.dtype)
    # Only the conv itself runs: it is what the report plots, and it leaves the model's mode alone.
    return conv(x)[0].float().cpu().numpy()


def _scaled(a: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant array becomes 0.5)."""
    lo, hi = float(a.min()), float(a.max())
    return np.full_like(a, 0.5) if hi - lo < 1e-12 else (a - lo) / (hi - lo)


def _viridis() -> np.ndarray:
    """Viridis as a 256 x 3 uint8 lookup table, interpolated from plotly's ten stops (no matplotlib)."""
    stops = np.array([hex_to_rgb(c) for c in sequential.Viridis], dtype=np.float64)
    at = np.linspace(0, len(stops) - 1, 256)
    return np.stack([np.interp(at, np.arange(len(stops)), stops[:, k]) for k in range(3)], 1).round().astype(np.uint8)


VIRIDIS = _viridis()


def filters_image(weights: np.ndarray, grayscale: bool = False) -> Image.Image:
    """A grid of kernels: RGB min-max scaled per kernel, or the channel average in grey (report 002)."""
    out, cin = weights.shape[:2]
    if grayscale or cin != 3:
        tiles = [np.repeat((255 * _scaled(w.mean(0))).round().astype(np.uint8)[..., None], 3, 2) for w in weights]
    else:
        tiles = [(255 * _scaled(w)).round().astype(np.uint8).transpose(1, 2, 0) for w in weights]
    kind = "channel-averaged, grayscale" if grayscale else "RGB, min-max scaled per kernel"
    title = f"First-layer kernels ({out} x {cin} x {weights.shape[2]}x{weights.shape[3]}, {kind})"
    return image_grid(tiles, title)


def feature_maps_image(maps: np.ndarray, image: np.ndarray | None = None) -> Image.Image:
    """A grid of the first conv's feature maps (viridis, each min-max scaled), the input image first when given."""
    tiles = [np.asarray(image).transpose(1, 2, 0).astype(np.uint8)] if image is not None else []
    tiles += [VIRIDIS[(255 * _scaled(m)).round().astype(np.int64)] for m in maps]
    first = "the input image, then " if image is not None else ""
    return image_grid(tiles, f"Feature maps after the first convolution: {first}{len(maps)} channels (viridis)")


def cell_images(model: Any, image: Any, normalize: str) -> dict[str, Image.Image]:
    """The pictures of one finished cell: first-layer filters and the feature maps of one image.

    Its per-epoch curves are MLflow's own charts (the run's metrics), so no figure repeats them.
    """
    maps = feature_maps(model, image, normalize)
    return {
        "filters": filters_image(first_layer_filters(model)),
        "feature_maps": feature_maps_image(maps, image.numpy()),
    }
