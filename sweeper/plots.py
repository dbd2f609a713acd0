"""Plot helpers shared by the sweep, tables and analysis: plotly figures as HTML that works offline, PNG
through kaleido where a browser is, and pictures (kernels, feature maps) as PNG drawn with PIL.

The HTML carries its own plotly.js (about 4.8 MB a file): offline, on a cluster node or in MLflow's
artifact view (which shows an HTML artifact in a sandboxed frame, where a relative link to a shared
copy would not resolve), a CDN link draws nothing. Cell runs log no plotly HTML at all (their curves
are MLflow's own charts, their pictures PNG), so the cost is per sweep figure, not per run.

PNG export of a plotly figure needs kaleido (a Python package) and a Chromium it can drive: Debian's `chromium`
package, found on PATH or through $BROWSER_PATH (choreographer's variable). One headless browser
is started on first use and kept for the life of the process, so each further image costs a
fraction of a second rather than a browser start. Without a browser, figures stay HTML-only
and one warning says why.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from sweeper.errors import warn

_png: dict[str, Any] = {"ready": False, "broken": None}
_png_lock = threading.Lock()  # kaleido's sync server hands results back in call order: one caller at a time
# A browser that dies while starting leaves kaleido waiting forever: bound every render.
FIRST_RENDER_TIMEOUT_S, RENDER_TIMEOUT_S = 60.0, 120.0


def save_figure(fig: go.Figure, stem: Path, png: bool = True) -> list[Path]:
    """Write fig to stem.html (plotly.js inside: it draws offline) and stem.png; returns the files."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    # appended, not with_suffix: a stem such as "lr_1e-3.5" or "vgg_bn.lr" keeps its whole name
    html, image = stem.parent / f"{stem.name}.html", stem.parent / f"{stem.name}.png"
    fig.write_html(html, include_plotlyjs=True)
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


# --- pictures: PNG without a browser ---------------------------------------------------------

TILE, GAP, MARGIN, FONT_SIZE, MIN_WIDTH = 64, 4, 12, 16, 560


def image_grid(tiles: list[np.ndarray], title: str) -> Image.Image:
    """uint8 [H, W, 3] tiles on a white grid, each scaled up to TILE pixels (nearest), under a wrapped title."""
    cols = max(1, math.ceil(math.sqrt(len(tiles))))
    rows = max(1, math.ceil(len(tiles) / cols))
    grid_w = cols * TILE + (cols - 1) * GAP
    width = max(grid_w + 2 * MARGIN, MIN_WIDTH)
    font = ImageFont.load_default(size=FONT_SIZE)
    lines = _wrap(title, font, width - 2 * MARGIN)
    top = MARGIN + len(lines) * (FONT_SIZE + 6) + MARGIN
    canvas = Image.new("RGB", (width, top + rows * TILE + (rows - 1) * GAP + MARGIN), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((MARGIN, MARGIN + i * (FONT_SIZE + 6)), line, fill="black", font=font)
    left = (width - grid_w) // 2
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        picture = Image.fromarray(np.ascontiguousarray(tile), "RGB").resize((TILE, TILE), Image.Resampling.NEAREST)
        canvas.paste(picture, (left + c * (TILE + GAP), top + r * (TILE + GAP)))
    return canvas


def _wrap(text: str, font: Any, width: int) -> list[str]:
    """Words into lines no wider than width pixels in font (a title is never cut off)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines or [""]


def save_image(image: Image.Image, stem: Path) -> Path:
    """Write a picture as stem.png; returns the file."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.parent / f"{stem.name}.png"
    image.save(path, optimize=True)
    return path


def save_any(picture: Any, stem: Path, png: bool = True) -> list[Path]:
    """A PIL picture as PNG, a plotly figure as HTML (and PNG where a browser draws it)."""
    return [save_image(picture, stem)] if isinstance(picture, Image.Image) else save_figure(picture, stem, png)
