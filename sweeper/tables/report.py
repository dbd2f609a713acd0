"""`sweeper plot` and `sweeper report`: a sweep's comparison figure, and one markdown file of every sweep.

Both bring each sweep's summary page in MLflow up to date (summary.py) as they read its table.
"""

from __future__ import annotations

import os
from pathlib import Path

from sweeper import tables
from sweeper.errors import UserError
from sweeper.runs import tracking
from sweeper.secrets import mask_uri
from sweeper.tables.compare import save_comparison, stem
from sweeper.tables.summary import publish
from sweeper.vocab import DEFAULT_PROFILE


def plot(
    name: str,
    metric: str = "val_acc",
    out: Path | None = None,
    profile: str | None = None,
    tracking_uri: str | None = None,
    bar_metric: str | None = None,
    png: bool = True,
) -> list[Path]:
    """Draw a sweep's comparison figure, save it and log it to the sweep's parent run; returns the files."""
    table = tables.build(name, profile, tracking_uri)
    publish(table, tracking_uri, figure=False)  # this figure is drawn next
    out = out or Path("results") / f"{stem(table)}-{metric}.html"
    return save_comparison(table, tracking.open_store(tracking_uri), metric, out, bar_metric, png)


def sweeps(store: tracking.Store) -> list[tuple[str, str]]:
    """(sweep name, profile) of every experiment in the store that has a sweep, in name order."""
    found = []
    for exp in sorted(store.client.search_experiments(), key=lambda e: e.name):
        profiles = {
            r.data.tags.get(tracking.Tag.PROFILE, DEFAULT_PROFILE)
            for r in tracking.sweep_runs(store, exp.experiment_id)
        }
        found += [(exp.name, p) for p in sorted(profiles)]
    return found


def report(
    out: Path = Path("results"),
    tracking_uri: str | None = None,
    metric: str = "val_acc",
    figures: bool = True,
    png: bool = True,
) -> Path:
    """Write out/report.md: every sweep's table (markdown) with a link to its comparison figure."""
    store = tracking.open_store(tracking_uri, create=False)
    parts = [
        f"# Results\n\nRegenerated from the MLflow store `{mask_uri(store.uri)}` by `sweeper report`; "
        f"check a table with `sweeper table NAME --check {out / 'report.md'}`.\n"
    ]
    for name, profile in sweeps(store):
        parts.append(_section(name, profile, out, store, metric if figures else None, png))
    if len(parts) == 1:
        raise UserError(f"no sweeps in {mask_uri(store.uri)}: run `sweeper run experiments/NAME.yaml` first.")
    path = out / "report.md"
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(parts))
    os.replace(tmp, path)  # never a half-written report
    return path


def _section(name: str, profile: str, out: Path, store: tracking.Store, metric: str | None, png: bool) -> str:
    """One sweep's part of the report; a sweep that cannot be tabled says why instead of vanishing."""
    try:
        table = tables.build(name, profile, store.uri)
    except UserError as exc:
        return f"## {name} [{profile}]\n\nCould not build this table: {exc}\n"
    publish(table, store.uri, figure=False)  # the figure below, when drawn, is the sweep's
    source = f"; source: {table.source}" if table.source else ""
    text = (
        f"## {table.title}\n\nSweep `{table.name}`, profile `{profile}`{source}.\n\n{tables.render(table, 'markdown')}"
    )
    if metric is None:
        return text
    try:
        files = save_comparison(table, store, metric, out / "figures" / f"{stem(table)}.html", png=png)
    except UserError as exc:
        return text + f"\nNo figure: {exc}\n"
    links = [
        f"[{metric} per epoch and {table.metrics[0].header}]({f.relative_to(out).as_posix()})"
        for f in files
        if f.suffix == ".html"
    ]
    images = [f"![{table.title}]({f.relative_to(out).as_posix()})" for f in files if f.suffix == ".png"]
    return text + "\n" + "\n\n".join(images + ["Figure: " + ", ".join(links)]) + "\n"
