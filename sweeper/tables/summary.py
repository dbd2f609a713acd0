"""The sweep's parent run as its summary page in the MLflow UI, and the links sweeper prints to it.

The Description is the table with its notes (rendered markdown), the metrics are the table's
means (`METRIC/ROW`, so the runs list and the chart view show them), the parameters are the
settings every row shares. `publish` refreshes all of it, with table.md and the comparison figure,
only when the table changed: an unchanged `sweeper table` on a local store still imports no MLflow.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.errors import UserError, warn
from sweeper.runs import artifacts
from sweeper.runs.server import ui_url
from sweeper.secrets import mask_uri
from sweeper.settings import get_settings
from sweeper.tables.build import TABLE_MD, build
from sweeper.tables.escape import markdown_cell
from sweeper.tables.formats import render
from sweeper.tables.runs import read_runs
from sweeper.tables.table import Table
from sweeper.vocab import Tag

if TYPE_CHECKING:  # imported where used: MLflow costs seconds, and only a changed table needs it
    from sweeper.runs.tracking import Store

MAX_DESCRIPTION = 8000  # MLflow's limit on a tag's value
FIGURE_METRIC = "val_acc"  # the per-epoch metric of the figure the summary keeps current
LOCAL_UI = "http://127.0.0.1:5000"  # where `sweeper server` serves the local store by default


def description(table: Table) -> str:
    """The run's Description: what the sweep is, then the table with its notes, within MLflow's limit."""
    source = f"; source: {markdown_cell(table.source)}" if table.source else ""
    head = f"**{markdown_cell(table.title)}**: sweep `{table.name}`, profile `{table.profile or 'default'}`{source}."
    tail = "\n\n_Rebuilt from the runs after each cell and by `sweeper table`; also the artifact table.md._\n"
    grid, _, notes = render(table, "markdown").partition("\n\n")
    listed = "\n".join(f"- {note}" for note in notes.splitlines() if note)  # one line each, as in table.md
    # The table first: the UI shows a description's first lines until "Show more" is clicked.
    text = f"{grid}\n\n{head}\n\n{listed}{tail}"
    if len(text) <= MAX_DESCRIPTION:
        return text
    lines = grid.splitlines()
    cut = "\n\n_The table is longer than a run's description holds: all of it is the artifact table.md._\n"
    while lines and len(head) + sum(len(line) + 1 for line in lines) + len(cut) + 2 > MAX_DESCRIPTION:
        lines.pop()
    return "\n".join(lines) + f"\n\n{head}{cut}"


def metrics(table: Table) -> dict[str, float]:
    """The table's means as metrics named METRIC/ROW (logged units), rows without a value left out."""
    out: dict[str, float] = {}
    for i, (label, row) in enumerate(zip(table.labels, table.values)):
        name = re.sub(r"[^\w.\- ]", "_", label).strip() or f"row {i + 1}"
        name = f"row {i + 1}" if set(name) <= {"."} else name  # '.' and '..' would read as paths
        for metric, value in zip(table.metrics, row):
            key = f"{metric.key}/{name}"[:250]
            if value.values:
                out[key if key not in out else f"{key} ({i + 1})"] = round(value.mean, 6)  # no float dust in the UI
    return out


def publish(table: Table, tracking_uri: str | None, figure: bool = True) -> bool:
    """Bring the sweep's parent run up to date with the table (Description, metrics, parameters, table.md,
    the comparison figure); False when it already was. A store that refuses is a warning."""
    text = description(table)
    if table.parent_run is None or text == table.logged:
        return False
    artifacts.publish_text(tracking_uri, table.parent_run, table.parent_artifacts, TABLE_MD, render(table))
    # Here only: the table changed, so MLflow (and plotly for the figure) are worth their import time.
    from sweeper.runs import summary, tracking

    try:
        store = tracking.open_store(tracking_uri)
        source = f"\n\nSource: {markdown_cell(table.source)}" if table.source else ""
        about = f"{markdown_cell(table.title)}{source}"  # the experiment's Description, markdown too
        kept = {Tag.FULL_COST: table.full_cost} if table.full_cost else {}  # the next `sweeper table` reads it
        summary.write(store, table.parent_run, text, metrics(table), table.settings, about, kept)
    except Exception as exc:  # noqa: BLE001 - the table is printed and table.md written either way
        warn(f"the summary of run {table.parent_run} was not updated: {type(exc).__name__}: {exc}")
        return False
    if figure:
        _redraw(table, store)
    return True


def _redraw(table: Table, store: Store) -> None:
    """The comparison figure of the changed table, logged over the previous one."""
    from sweeper.tables import compare

    with tempfile.TemporaryDirectory() as tmp:
        try:
            compare.save_comparison(
                table, store, FIGURE_METRIC, Path(tmp) / f"{compare.stem(table)}.html", png=get_settings().png
            )
        except UserError:
            pass  # no finished run logged the curve yet: the figure comes with the first one


def refresh(
    spec: str | Path, profile: str | None, tracking_uri: str | None, full_cost: Callable[[], str] | None = None
) -> None:
    """After a cell finished: rebuild the sweep's table and refresh its summary page; never fails the sweep.

    full_cost: what the spec's full profile costs (`sweeper list`), asked only of a smoke profile's table.
    """
    try:
        table = build(str(spec), profile, tracking_uri)
        if table.smoke and not table.full_cost and full_cost is not None:
            table = build(str(spec), profile, tracking_uri, full_cost=full_cost())
        publish(table, tracking_uri)
    except Exception as exc:  # noqa: BLE001 - the cell's own run is what matters here
        warn(f"the sweep's summary was not refreshed: {type(exc).__name__}: {exc}")


def ui_link(name: str, tracking_uri: str | None) -> str:
    """Where the sweep's experiment opens in the MLflow UI (model-training view), with how to get there."""
    uri = get_settings().resolved_tracking_uri(tracking_uri)
    exp_id = read_runs(uri, lambda runs: runs.experiment_id(name))
    if uri.startswith(("http://", "https://")):
        return f"MLflow: {ui_url(mask_uri(uri), exp_id)}"
    return f"MLflow: {ui_url(LOCAL_UI, exp_id)} (after `sweeper server`)"


def ui_links(tracking_uri: str | None, base: str | None = None) -> list[str]:
    """'NAME: URL' of every experiment in the store, opening in the model-training view (base: the UI's address)."""
    uri = get_settings().resolved_tracking_uri(tracking_uri)
    remote = uri.startswith(("http://", "https://"))
    base = base or (mask_uri(uri) if remote else LOCAL_UI)
    found = read_runs(uri, lambda runs: [(n, runs.experiment_id(n)) for n in runs.experiment_names()])
    return [f"{name}: {ui_url(base, exp_id)}" for name, exp_id in sorted(found) if name != "Default"]
