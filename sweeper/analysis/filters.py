"""First-layer kernels and the feature maps of one image after the first convolution (report 002 fig. 2)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import nn

from sweeper import plots
from sweeper.models import first_conv
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


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def filters_figure(weights: np.ndarray, grayscale: bool = False) -> go.Figure:
    """A grid of kernels: RGB min-max scaled per kernel, or the channel average in grey (report 002)."""
    out, cin = weights.shape[:2]
    rows, cols = _grid(out)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.01, vertical_spacing=0.01)
    for i in range(out):
        r, c = divmod(i, cols)
        w = weights[i]
        if grayscale or cin != 3:
            trace = go.Heatmap(
                z=_scaled(w.mean(0)),
                colorscale="gray",
                showscale=False,
                zmin=0,
                zmax=1,
                hovertemplate=f"filter {i}<extra></extra>",
            )
        else:
            rgb = (255 * _scaled(w)).round().astype(np.uint8).transpose(1, 2, 0)
            trace = go.Image(z=rgb, hovertemplate=f"filter {i}<extra></extra>")
        fig.add_trace(trace, row=r + 1, col=c + 1)
    fig.update_xaxes(visible=False, scaleanchor=None)
    fig.update_yaxes(visible=False, autorange="reversed")  # row 0 at the top, as in an image
    kind = "channel-averaged, grayscale" if grayscale else "RGB, min-max scaled per kernel"
    size = 90 * cols
    fig.update_layout(
        title=f"First-layer kernels ({out} x {cin} x {weights.shape[2]}x{weights.shape[3]}, {kind})",
        width=size + 100,
        height=90 * rows + 100,
        margin=dict(l=20, r=20, t=60, b=20),
    )
    return fig


def feature_maps_figure(maps: np.ndarray, image: np.ndarray | None = None) -> go.Figure:
    """A grid of the first conv's feature maps (viridis), with the input image first when given."""
    n = len(maps) + (image is not None)
    rows, cols = _grid(n)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.01, vertical_spacing=0.01)
    offset = 0
    if image is not None:
        fig.add_trace(
            go.Image(z=np.asarray(image).transpose(1, 2, 0), hovertemplate="input<extra></extra>"), row=1, col=1
        )
        offset = 1
    for i, m in enumerate(maps):
        r, c = divmod(i + offset, cols)
        fig.add_trace(
            go.Heatmap(
                z=m, colorscale="Viridis", showscale=False, hovertemplate=f"channel {i}: %{{z:.3f}}<extra></extra>"
            ),
            row=r + 1,
            col=c + 1,
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")  # row 0 at the top, as in an image
    fig.update_layout(
        title=f"Feature maps after the first convolution ({len(maps)} channels)",
        width=90 * cols + 100,
        height=90 * rows + 100,
        margin=dict(l=20, r=20, t=60, b=20),
    )
    return fig


def cell_figures(
    history: list[dict[str, float]], model: Any, image: Any, normalize: str, title: str = ""
) -> dict[str, go.Figure]:
    """The figures of one finished cell: training curves, first-layer filters, feature maps of one image."""
    return {
        "curves": plots.training_curves(history, title),
        "filters": filters_figure(first_layer_filters(model)),
        "feature_maps": feature_maps_figure(feature_maps(model, image, normalize), image=image.numpy()),
    }
