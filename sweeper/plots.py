"""Plot helpers shared by tracking, tables and analysis: save a plotly figure as HTML (and PNG)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go


def save_figure(fig: go.Figure, stem: Path) -> list[Path]:
    """Write fig to stem.html (plotly.js from its CDN, to keep artifacts small); returns the files written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.with_suffix(".html")
    fig.write_html(html, include_plotlyjs="cdn")
    return [html]
