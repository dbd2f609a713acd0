"""Tracked runs -> the report's table: data first (a Table of cells), then renderers."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper import tracking
from sweeper.config import flatten
from sweeper.errors import UserError
from sweeper.spec import Metric, Spec, expand, load_spec, parse_spec


@dataclass
class Value:
    """One metric of one row: the values over seeds, and how many seeds were expected."""

    values: list[float]
    expected: int
    status: str = "ok"  # ok | missing | running | failed

    @property
    def mean(self) -> float:
        """Mean over seeds, NaN when none finished."""
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


@dataclass
class Table:
    """The table as data: identifying cells as text, metric cells as Values."""

    title: str
    headers: list[str]
    keys: list[list[str]]
    metrics: list[Metric]
    values: list[list[Value]]
    notes: list[str] = field(default_factory=list)

    def best(self, column: int) -> int | None:
        """Row index of the best mean in a metric column, by the metric's goal."""
        goal = self.metrics[column].goal()
        means = [(row[column].mean, i) for i, row in enumerate(self.values) if not math.isnan(row[column].mean)]
        if goal == "none" or not means:
            return None
        return (max if goal == "max" else min)(means)[1]


def resolve_spec(name_or_path: str, store: tracking.Store, profile: str | None) -> tuple[Spec, str | None]:
    """The spec of a table: a YAML path as given, else the one logged by the named sweep."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        spec = load_spec(path)
        return spec, profile if profile is not None else _latest_profile(store, spec.name)
    exp_id = tracking.experiment_id(store, name_or_path, create=False)
    if exp_id is None:
        known = [e.name for e in store.client.search_experiments() if e.name != "Default"]
        raise UserError(
            f"no sweep named '{name_or_path}' in {store.uri} (sweeps there: {', '.join(known) or 'none'}). "
            f"Run `sweeper run experiments/{name_or_path}.yaml` first, or pass the spec's path."
        )
    sweeps = tracking.sweep_runs(store, exp_id)
    wanted = profile or (sweeps[0].data.tags.get("sweeper.profile") if sweeps else None)
    match = [s for s in sweeps if s.data.tags.get("sweeper.profile") == (wanted or "default")]
    if not match:
        raise UserError(f"sweep '{name_or_path}' has never run with profile '{wanted}' in {store.uri}.")
    text = tracking.read_text_artifact(store, match[0].info.run_id, "spec.yaml")
    profile = None if wanted == "default" else wanted
    return parse_spec(text, Path(f"{name_or_path} (spec logged in MLflow run {match[0].info.run_id})")), profile


def _latest_profile(store: tracking.Store, name: str) -> str | None:
    exp_id = tracking.experiment_id(store, name, create=False)
    sweeps = tracking.sweep_runs(store, exp_id) if exp_id else []
    tag = sweeps[0].data.tags.get("sweeper.profile") if sweeps else None
    return None if tag in (None, "default") else tag


def build(name_or_path: str, profile: str | None = None, tracking_uri: str | None = None) -> Table:
    """The spec's table from MLflow: one row per spec row, mean/std over its seeds."""
    store = tracking.open_store(tracking_uri)
    spec, profile = resolve_spec(name_or_path, store, profile)
    exp_id = tracking.experiment_id(store, spec.name, create=False)
    runs = tracking.cell_runs(store, exp_id) if exp_id else []
    by_cell: dict[str, list[Any]] = {}
    for run in runs:
        by_cell.setdefault(run.data.tags.get("sweeper.cell", ""), []).append(run)
    cells = expand(spec, profile)
    rows: dict[int, list] = {}
    for cell in cells:
        rows.setdefault(cell.row, []).append(cell)
    keys, values = [], []
    for row_cells in rows.values():
        flat = {"label": row_cells[0].label, **flatten(row_cells[0].config.model_dump(mode="json"))}
        keys.append([_show(flat.get(c.key, "?")) for c in spec.table.columns])
        values.append([_collect(metric, row_cells, by_cell) for metric in spec.table.metrics])
    title = spec.title or spec.name
    notes = [f"profile: {profile or 'default'}; {len(spec.seeds)} seed(s) per row; mean ± std over seeds; best in bold."]
    return Table(title, [c.header for c in spec.table.columns] + [m.header for m in spec.table.metrics],
                 keys, spec.table.metrics, values, notes)


def _collect(metric: Metric, cells: list, by_cell: dict[str, list[Any]]) -> Value:
    """A metric's finished values over a row's seeds, and the row's worst status otherwise."""
    found, statuses = [], []
    for cell in cells:
        runs = by_cell.get(cell.id, [])
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished and metric.key in finished[0].data.metrics:
            found.append(finished[0].data.metrics[metric.key])
        elif runs:
            statuses.append("running" if runs[0].info.status == "RUNNING" else runs[0].info.status.lower())
        else:
            statuses.append("missing")
    status = "ok" if found else (statuses[0] if statuses else "missing")
    return Value(found, len(cells), status)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def fmt_number(value: float, fmt: str) -> str:
    """One number in a metric's format: percent (2 decimals), loss (4), params (11.17M), int, float."""
    if fmt == "percent":
        return f"{100 * value:.2f}"
    if fmt == "loss":
        return f"{value:.4f}"
    if fmt == "params":
        return f"{value / 1e6:.2f}M"
    if fmt == "int":
        return f"{value:.0f}"
    return f"{value:.4g}"


def fmt_value(value: Value, fmt: str) -> str:
    """A cell as text: 'mean ± std', '(n=2/3)' when seeds are missing, or the status."""
    if not value.values:
        return value.status
    text = fmt_number(value.mean, fmt)
    if len(value.values) > 1:
        text += " ± " + fmt_number(value.std, fmt if fmt != "params" else "float")
    if len(value.values) < value.expected:
        text += f" (n={len(value.values)}/{value.expected})"
    return text


def render(table: Table, fmt: str = "markdown") -> str:
    """The table as markdown or CSV."""
    cells = [k + [fmt_value(v, m.format) for v, m in zip(vals, table.metrics)] for k, vals in zip(table.keys, table.values)]
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([table.headers, *cells])
        return out.getvalue()
    if fmt != "markdown":
        raise UserError(f"unknown table format '{fmt}'; use markdown or csv.")
    offset = len(table.keys[0]) if table.keys else 0
    for col in range(len(table.metrics)):
        best = table.best(col)
        if best is not None:
            cells[best][offset + col] = f"**{cells[best][offset + col]}**"
    lines = ["| " + " | ".join(table.headers) + " |", "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n\n" + "\n".join(table.notes) + "\n"
