"""Comparison figures of a table's rows: data first, then plotly figures.

`curves` and `bars` return DataFrames (tests check those); `comparison_figure` draws them;
`save_comparison` saves the figure (HTML, and PNG where sweeper.plots can) and logs it to the
sweep's parent run under one name. `plot` and `report` (report.py) and the sweep's summary
(summary.py) draw through it.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from sweeper import tables
from sweeper.errors import UserError
from sweeper.plots import save_figure
from sweeper.runs import tracking

SCALE = {"percent": 100.0}  # display units of a metric format (the table shows percent as 0-100)


def curves(table: tables.Table, metric: str, store: tracking.Store) -> pd.DataFrame:
    """Per row and epoch: mean, std, min, max and n of a metric over the row's finished seeds."""
    records = []
    for row, (label, run_ids) in enumerate(zip(table.labels, table.run_ids)):
        for run_id in run_ids:
            records += [
                (row, label, run_id, step, value) for step, value in tracking.metric_history(store, run_id, metric)
            ]
    if not records:
        raise UserError(
            f"no finished run of sweep '{table.name}' logged the metric '{metric}' per epoch "
            "(per-epoch metrics: train_loss, train_acc, val_loss, val_acc, lr, epoch_time, images_per_s)."
        )
    long = pd.DataFrame(records, columns=["row", "label", "run_id", "epoch", "value"])
    out = long.groupby(["row", "label", "epoch"], sort=True)["value"].agg(["mean", "std", "min", "max", "count"])
    return out.rename(columns={"count": "n"}).reset_index()


def bars(table: tables.Table, column: int = 0) -> pd.DataFrame:
    """One table metric per row: mean, std and n over seeds, the report's value (NaN: none), all in display
    units, and the row's state."""
    metric = table.metrics[column]
    scale = SCALE.get(metric.format, 1.0)
    given = table.reported or [[None] * len(table.metrics) for _ in table.labels]
    printed = [math.nan if (value := rep[column]) is None else value for rep in given]
    rows = [
        (
            label,
            row[column].mean * scale,
            row[column].std * scale,
            len(row[column].values),
            row[column].status,
            rep * scale,
        )
        for label, row, rep in zip(table.labels, table.values, printed)
    ]
    return pd.DataFrame(rows, columns=["label", "mean", "std", "n", "status", "reported"])


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _curve_traces(fig: go.Figure, curve: pd.DataFrame, labels: list[str]) -> None:
    """Each row's mean curve over seeds, with its min-max band where it has two seeds or more."""
    palette = qualitative.Plotly
    for i, label in enumerate(labels):
        colour, part = palette[i % len(palette)], curve[curve["label"] == label]
        if not len(part):
            continue
        if part["n"].max() > 1:
            x = list(part["epoch"]) + list(part["epoch"])[::-1]
            y = list(part["max"]) + list(part["min"])[::-1]
            band = {"fill": "toself", "fillcolor": _rgba(colour, 0.2), "line": {"width": 0}, "hoverinfo": "skip"}
            band |= {"mode": "lines"}  # the outline only: markers would dot the band in another colour
            fig.add_trace(go.Scatter(x=x, y=y, showlegend=False, legendgroup=label, **band), row=1, col=1)
        line = {"mode": "lines+markers", "line": {"color": colour}, "hovertemplate": "%{y:.4g} (n=%{customdata})"}
        fig.add_trace(
            go.Scatter(x=part["epoch"], y=part["mean"], name=label, legendgroup=label, customdata=part["n"], **line),
            row=1,
            col=1,
        )


def comparison_figure(curve: pd.DataFrame, bar: pd.DataFrame, metric: str, bar_title: str, title: str) -> go.Figure:
    """Left: each row's mean curve over seeds with its min-max band; right: bars with ±std error bars, each
    bar's value written on it and the report's value marked beside it."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.55, 0.45],
        horizontal_spacing=0.1,
        subplot_titles=(f"{metric} per epoch: mean over seeds, band min–max", f"{bar_title}: mean ± std"),
    )
    _curve_traces(fig, curve, list(bar["label"]))
    palette = qualitative.Plotly
    ticks = [f"{r.label} ({r.status})" if r.n == 0 else r.label for r in bar.itertuples()]
    fig.add_trace(
        go.Bar(
            x=ticks,
            y=bar["mean"],
            error_y={"type": "data", "array": bar["std"], "visible": True},
            marker_color=[palette[i % len(palette)] for i in range(len(bar))],
            showlegend=False,
            text=[f"{m:.2f}<br>n={n}" if n else "" for m, n in zip(bar["mean"], bar["n"])],
            textposition="inside",
            insidetextanchor="middle",
        ),
        row=1,
        col=2,
    )
    if bar["reported"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=ticks,
                y=bar["reported"],
                mode="markers",
                name="the report's value",
                marker={"symbol": "diamond", "size": 14, "color": "black", "line": {"color": "white", "width": 1}},
                hovertemplate="report: %{y:.4g}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    epochs = int(curve["epoch"].max()) if len(curve) else 1
    fig.update_xaxes(title_text="epoch", tick0=0, dtick=max(1, math.ceil(epochs / 10)), tickformat="d", row=1, col=1)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_yaxes(title_text=bar_title, row=1, col=2)
    fig.update_annotations(font_size=15)  # the subplot titles
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 20}},
        template="plotly_white",
        font={"size": 14},
        width=1300,
        height=560,
        margin={"t": 110, "l": 70, "r": 30, "b": 90},
        legend={"orientation": "h", "y": -0.18},
    )
    return fig


def save_comparison(
    table: tables.Table, store: tracking.Store, metric: str, out: Path, bar_metric: str | None = None, png: bool = True
) -> list[Path]:
    """The comparison figure of a built table as out (.html, and .png beside it), logged under figures/."""
    keys = [m.key for m in table.metrics]
    if bar_metric is not None and bar_metric not in keys:
        raise UserError(
            f"'{bar_metric}' is not a metric of the table of '{table.name}' (its metrics: {', '.join(keys)})."
        )
    column = keys.index(bar_metric) if bar_metric else 0
    fig = comparison_figure(
        curves(table, metric, store),
        bars(table, column),
        metric,
        table.metrics[column].header,
        f"{table.title} [{table.profile or 'default'}]",
    )
    files = save_figure(fig, out.with_suffix("") if out.suffix == ".html" else out, png=png)
    if table.parent_run:
        log_figure(store, table.parent_run, files, f"comparison_{metric}")
    return files


def log_figure(store: tracking.Store, run_id: str, files: list[Path], name: str) -> None:
    """Log a figure's files to the run as figures/NAME.*: plot, report and the sweep redraw one artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        named = [Path(shutil.copy(f, Path(tmp) / f"{name}{f.suffix}")) for f in files]
        tracking.log_files(store, run_id, named, "figures")


def stem(table: tables.Table) -> str:
    """A file name for a sweep and profile (dots would read as a suffix)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{table.name}-{table.profile or 'default'}")
