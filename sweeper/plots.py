"""Plot helpers shared by the sweep, tables and analysis: figures as HTML always, and PNG through kaleido.

PNG export needs kaleido (a Python package) and a Chromium it can drive: Debian's `chromium`
package, found on PATH or through $BROWSER_PATH (choreographer's variable). One headless browser
is started on first use and kept for the life of the process, so each further image costs a
fraction of a second rather than a browser start. Without a browser, figures stay HTML-only
and one warning says why.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sweeper.errors import warn

_png: dict[str, Any] = {"ready": False, "broken": None}
_png_lock = threading.Lock()  # kaleido's sync server hands results back in call order: one caller at a time
# A browser that dies while starting leaves kaleido waiting forever: bound every render.
FIRST_RENDER_TIMEOUT_S, RENDER_TIMEOUT_S = 60.0, 120.0


def save_figure(fig: go.Figure, stem: Path, png: bool = True) -> list[Path]:
    """Write fig to stem.html (plotly.js from its CDN, to keep artifacts small) and stem.png; returns the files."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    # appended, not with_suffix: a stem such as "lr_1e-3.5" or "vgg_bn.lr" keeps its whole name
    html, image = stem.parent / f"{stem.name}.html", stem.parent / f"{stem.name}.png"
    fig.write_html(html, include_plotlyjs="cdn")
    files = [html]
    if png:
        with _png_lock:
            if _write_png(fig, image):
                files.append(image)
    return files


def png_unavailable() -> str | None:
    """Why PNG export does not work here (None while it does, or before it was tried)."""
    return _png["broken"]


def _write_png(fig: go.Figure, path: Path) -> bool:
    if _png["broken"]:
        return False
    try:
        first = not _png["ready"]
        if first:
            _start_browser()
        spec = {
            "fig": fig.to_dict(),
            "path": path,
            "opts": {"format": "png", "scale": 1, "width": fig.layout.width or 900, "height": fig.layout.height or 600},
        }
        _with_timeout(
            lambda: _kaleido().write_fig_from_object_sync([spec]), FIRST_RENDER_TIMEOUT_S if first else RENDER_TIMEOUT_S
        )
        return path.is_file()
    except Exception as exc:  # noqa: BLE001 - a missing browser must not cost the run its results
        _png["broken"] = f"{type(exc).__name__}: {exc}"
        warn(
            f"figures are HTML only: PNG export failed ({_png['broken']}). PNGs need kaleido and "
            "Chromium (Debian: apt-get install chromium; or set BROWSER_PATH)."
        )
        return False


def _kaleido() -> Any:
    # Imported on the first PNG only: kaleido (with choreographer) costs ~0.3 s to import, which
    # HTML-only callers (`--no-png`, a machine without Chromium) should not pay.
    import kaleido

    return kaleido


def _start_browser() -> None:
    """Start kaleido's process-wide headless Chromium (no MathJax: it would be fetched from a CDN)."""
    from choreographer.browsers.chromium import Chromium

    browser = Chromium.find_browser(skip_local=False)
    if browser is None:
        raise RuntimeError("no Chromium or Chrome found on PATH or at $BROWSER_PATH")
    _kaleido().start_sync_server(path=browser, mathjax=False, silence_warnings=True)
    _png["ready"] = True


def _with_timeout(job: Any, seconds: float) -> None:
    """Run job on a daemon thread; give up on it (and on kaleido) after `seconds`."""
    box: dict[str, BaseException | None] = {"error": None}

    def run() -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        # kaleido's atexit hook would join its stuck thread and hang the exit: mark it stopped.
        _kaleido()._global_server._initialized = False  # noqa: SLF001
        raise TimeoutError(f"the browser did not render a figure within {seconds:.0f} s")
    if box["error"] is not None:
        raise box["error"]


def training_curves(history: list[dict[str, float]], title: str = "") -> go.Figure:
    """Loss, accuracy and learning rate per epoch, train beside validation (one run's `history`)."""
    epochs = [h["epoch"] for h in history]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "accuracy", "learning rate"))
    colors = {"train": "#1f77b4", "val": "#d62728"}
    for col, metric in ((1, "loss"), (2, "acc")):
        for split in ("train", "val"):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[h.get(f"{split}_{metric}") for h in history],
                    mode="lines+markers",
                    name=split,
                    legendgroup=split,
                    showlegend=col == 1,
                    line={"color": colors[split]},
                ),
                row=1,
                col=col,
            )
    fig.add_trace(
        go.Scatter(
            x=epochs,
            y=[h.get("lr") for h in history],
            mode="lines+markers",
            name="lr",
            showlegend=False,
            line={"color": "#2ca02c"},
        ),
        row=1,
        col=3,
    )
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, len(epochs) // 10))  # whole epochs only
    fig.update_yaxes(type="log", row=1, col=3)
    fig.update_layout(title=title or "Training curves", width=1200, height=420, margin={"t": 70})
    return fig
