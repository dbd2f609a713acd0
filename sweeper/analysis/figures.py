"""Plotly figures of the analysis data: loss bands, probe ranges, 2D loss surfaces."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import hex_to_rgb
from plotly.subplots import make_subplots

from sweeper.analysis.curves import Band
from sweeper.analysis.landscape import Surface

# Report 000 draws BN red and the plain network green; the same here, then plotly's palette.
COLOURS = ["#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b"]


def _fill(colour: str, alpha: float = 0.25) -> str:
    r, g, b = hex_to_rgb(colour)
    return f"rgba({r},{g},{b},{alpha})"


def _band_traces(band: Band, colour: str, show_legend: bool = True) -> list[go.Scatter]:
    """Upper edge, lower edge filled up to it, and the median line."""
    name = f"{band.group} ({band.runs} runs)"
    edge = dict(width=0.5, color=colour)
    return [
        go.Scatter(
            x=band.steps,
            y=band.high,
            mode="lines",
            line=edge,
            legendgroup=band.group,
            showlegend=False,
            name=f"{band.group} max",
            hovertemplate="step %{x}: max %{y:.4g}<extra></extra>",
        ),
        go.Scatter(
            x=band.steps,
            y=band.low,
            mode="lines",
            line=edge,
            fill="tonexty",
            fillcolor=_fill(colour),
            legendgroup=band.group,
            showlegend=False,
            name=f"{band.group} min",
            hovertemplate="step %{x}: min %{y:.4g}<extra></extra>",
        ),
        go.Scatter(
            x=band.steps,
            y=band.mid,
            mode="lines",
            line=dict(width=1.5, color=colour),
            name=name,
            legendgroup=band.group,
            showlegend=show_legend,
            hovertemplate="step %{x}: median %{y:.4g}<extra></extra>",
        ),
    ]


def loss_band_figure(bands: list[Band], title: str, y_title: str = "training loss", log_y: bool = False) -> go.Figure:
    """One panel per group (e.g. without / with BatchNorm), side by side on a shared y axis."""
    fig = make_subplots(
        rows=1, cols=len(bands), shared_yaxes=True, subplot_titles=[b.group for b in bands], horizontal_spacing=0.04
    )
    for i, band in enumerate(bands):
        for trace in _band_traces(band, COLOURS[i % len(COLOURS)]):
            fig.add_trace(trace, row=1, col=i + 1)
        fig.update_xaxes(title_text="step", row=1, col=i + 1)
    fig.update_yaxes(title_text=y_title, row=1, col=1, type="log" if log_y else "linear")
    fig.update_layout(title=title, width=520 * len(bands), height=450, template="plotly_white")
    return fig


def band_overlay_figure(bands: list[Band], title: str, y_title: str, log_y: bool = False) -> go.Figure:
    """All groups on one axis, each a shaded range with its median (Santurkar et al. fig. 4)."""
    fig = go.Figure()
    for i, band in enumerate(bands):
        fig.add_traces(_band_traces(band, COLOURS[i % len(COLOURS)]))
    fig.update_layout(
        title=title,
        xaxis_title="step",
        yaxis_title=y_title,
        yaxis_type="log" if log_y else "linear",
        width=800,
        height=450,
        template="plotly_white",
    )
    return fig


def landscape_figure(surfaces: list[Surface], title: str = "Loss landscape") -> go.Figure:
    """Per surface (checkpoint) a row: a contour map and a 3D surface of the loss."""
    specs = [[{"type": "xy"}, {"type": "scene"}] for _ in surfaces]
    names = [name for s in surfaces for name in (f"{s.label} contour", f"{s.label} surface")]
    fig = make_subplots(
        rows=len(surfaces), cols=2, specs=specs, subplot_titles=names, horizontal_spacing=0.05, vertical_spacing=0.08
    )
    for i, s in enumerate(surfaces):
        hover = "a %{x:.2f}, b %{y:.2f}: loss %{z:.4g}<extra></extra>"
        fig.add_trace(
            go.Contour(
                x=s.alphas,
                y=s.betas,
                z=s.loss,
                colorscale="Viridis",
                showscale=False,
                contours=dict(showlabels=True),
                hovertemplate=hover,
            ),
            row=i + 1,
            col=1,
        )
        fig.add_trace(
            go.Surface(x=s.alphas, y=s.betas, z=s.loss, colorscale="Viridis", showscale=False, hovertemplate=hover),
            row=i + 1,
            col=2,
        )
        fig.update_xaxes(title_text="direction 1", row=i + 1, col=1)
        fig.update_yaxes(title_text="direction 2", row=i + 1, col=1)
    fig.update_scenes(xaxis_title="direction 1", yaxis_title="direction 2", zaxis_title="loss")
    images = surfaces[0].images if surfaces else 0
    fig.update_layout(
        title=f"{title} ({images} images, filter-normalised directions)",
        width=1100,
        height=500 * len(surfaces),
        template="plotly_white",
    )
    return fig
