"""Tracked runs -> the report's table as data (a Table of Values); renderers live in formats.py.

runs.py finds the run standing for each cell (current spec version only, unless all_versions);
here they become rows: mean ± std over seeds, the best row per column, Welch's test against it,
and notes that name every seed without a result.
"""

from __future__ import annotations

import math
from typing import Any

from sweeper.errors import UserError, did_you_mean
from sweeper.schema.dotted import flatten
from sweeper.schema.spec import Cell, Spec, expand
from sweeper.schema.table import Column
from sweeper.tables import search
from sweeper.tables.formats import check, fmt_number, fmt_value, key_text, render  # noqa: F401 - the API
from sweeper.tables.reported import MODES, describe, signed, verdicts
from sweeper.tables.runs import Pick, Runs, cell_runs, pick_runs, read_runs, resolve, resolve_spec, trial_cells  # noqa: F401
from sweeper.tables.table import STATES, Table, Value, welch_p  # noqa: F401 - the API
from sweeper.vocab import Tag

TABLE_MD = "table.md"  # the sweep run's artifact holding the table as last built

# --- building the table ---------------------------------------------------------------------


def build(
    name_or_path: str,
    profile: str | None = None,
    tracking_uri: str | None = None,
    all_versions: bool = False,
    reported: str = "inline",
    full_cost: str | None = None,
) -> Table:
    """The spec's table from the tracked runs: one row per spec row, mean/std over its seeds.

    `reported` (off, column, inline) is how the report's printed values show, with the verdict in the notes
    (no verdict for a smoke profile, whose notes say what the full profile costs: full_cost, else the sweep
    run's record of it).
    """
    if reported not in MODES:
        raise UserError(f"unknown --reported '{reported}'; use one of: {', '.join(MODES)}.")
    return read_runs(
        tracking_uri, lambda store: _build(store, name_or_path, profile, all_versions, reported, full_cost)
    )


def _build(
    store: Runs,
    name_or_path: str,
    profile: str | None,
    all_versions: bool,
    mode: str = "inline",
    cost: str | None = None,
) -> Table:
    """build() on one reader of the store."""
    spec, profile, parent = resolve(name_or_path, store, profile)
    exp_id = store.experiment_id(spec.name)
    runs = cell_runs(store, exp_id)
    cells = expand(spec, profile) if spec.search is None else trial_cells(spec, profile, runs)
    picks = pick_runs(cells, runs, profile, all_versions)
    rows: dict[int, list[Pick]] = {}
    for pick in picks:
        rows.setdefault(pick.cell.row, []).append(pick)
    order = _order(spec, list(rows.values()))
    _check_columns(spec, [p.cell for p in picks])
    table = Table(
        title=spec.title or spec.name,
        headers=[c.header for c in spec.table.columns] + [m.header for m in spec.table.metrics],
        keys=[[column_text(c, row) for c in spec.table.columns] for row in order],
        metrics=spec.table.metrics,
        values=[[collect(m.key, row) for m in spec.table.metrics] for row in order],
        labels=[row[0].cell.label for row in order],
        run_ids=[[p.run.info.run_id for p in row if p.state == "finished"] for row in order],
        name=spec.name,
        profile=profile,
        parent_run=parent,
        alpha=spec.table.alpha,
        source=spec.source,
        datasets=[[_data_of(p.run) for p in row if p.state == "finished"] for row in order],
        reported_mode=mode,
    )
    printed = spec.reported()  # kept with --reported off too: --check-reported judges them
    table.reported = [[printed.get(row[0].cell.label, {}).get(m.key) for m in table.metrics] for row in order]
    table.floors = [[spec.table.floor(m, r or 0.0) for m, r in zip(table.metrics, rep)] for rep in table.reported]
    search.mark_pruned(table, spec, order)
    table.settings = common_settings([p.cell for p in picks])
    sweeps = store.search(exp_id, "sweep") if exp_id and parent else []
    sweep = next((s for s in sweeps if s.info.run_id == parent), None)
    if sweep is not None:
        table.logged = sweep.data.tags.get(Tag.NOTE)
        table.parent_artifacts = sweep.info.artifact_uri or ""
    table.smoke = spec.is_smoke(profile)
    table.full_cost = cost or (sweep.data.tags.get(Tag.FULL_COST, "") if sweep is not None else "")
    table.notes = _notes(table, spec, order)  # after smoke and cost: the notes say what a smoke profile is
    search.mark_front(table, spec, order, collect)  # appends the Pareto front's note
    return table


def common_settings(cells: list[Cell]) -> dict[str, str]:
    """The config values every cell of the table shares, dotted: the sweep's parameters in MLflow."""
    flats = [flatten(c.config.model_dump(mode="json")) for c in cells]
    if not flats:
        return {}
    return {k: str(v) for k, v in flats[0].items() if all(k in f and f[k] == v for f in flats[1:])}


def out_of_tolerance(table: Table) -> list[str]:
    """'row: metric +2.31 (tolerance 1.00)' for every fully finished row outside its tolerance of the report."""
    names = table.labels
    return [
        f"{names[i]}: {v.metric.key} {signed(v.delta[i], v.metric)} (tolerance {v.tolerance[i]:.4g})"
        for v in verdicts(table)
        for i in v.outside
    ]


def _data_of(run: Any) -> tuple[str, str, str]:
    """(dataset, digest, train size) a finished run recorded; empty strings for runs from before they did."""
    tags = run.data.tags
    return tags.get(Tag.DATASET, ""), tags.get(Tag.DATASET_DIGEST, ""), tags.get(Tag.TRAIN_SIZE, "")


def _order(spec: Spec, rows: list[list[Pick]]) -> list[list[Pick]]:
    """Rows in spec order, or best-first by `table.sort` (rows without a value last, in spec order); a search's
    trials best first (tables/search.py)."""
    if spec.table.sort is None and spec.search is not None:
        return search.order(spec, rows, collect)
    if spec.table.sort is None:
        return rows
    metric = next(m for m in spec.table.metrics if m.key == spec.table.sort)
    sign = 1 if metric.goal() == "min" else -1

    def key(row: list[Pick]) -> tuple[int, float]:
        mean = collect(metric.key, row).mean
        return (1, 0.0) if math.isnan(mean) else (0, sign * mean)

    return sorted(rows, key=key)


def collect(key: str, row: list[Pick]) -> Value:
    """A metric's finished values over a row's seeds; with none, the row's most pressing state."""
    found, states = [], []
    for pick in row:
        if pick.state == "finished" and key in pick.run.data.metrics:
            found.append(pick.run.data.metrics[key])
        else:
            states.append("n/a" if pick.state == "finished" else pick.state)
    shown = [s for s in STATES if s in states]
    return Value(found, len(row), "ok" if found else "/".join(shown) or "missing")


def _check_columns(spec: Spec, cells: list[Cell]) -> None:
    """A column key that no row's config has is a typo, not a blank column."""
    keys = {"label", "row"} | {k for c in cells for k in flatten(c.config.model_dump(mode="json"))}
    for column in spec.table.columns:
        if column.key not in keys and not column.key.startswith("metrics."):
            hint = did_you_mean(column.key, sorted(keys))
            raise UserError(
                f"spec '{spec.name}': table column '{column.key}' is not a config key of any row, "
                f"`label`, `row` or `metrics.KEY`.{hint}"
            )


def column_text(column: Column, row: list[Pick]) -> str:
    """An identifying cell: the row's label, number, a config value or a logged metric, as the spec shows it."""
    cell = row[0].cell
    flat = {"label": cell.label, "row": cell.row + 1, **flatten(cell.config.model_dump(mode="json"))}
    metric = column.key.removeprefix("metrics.") if column.key.startswith("metrics.") else None
    return key_text(column, flat, collect(metric, row) if metric else None)


def _notes(table: Table, spec: Spec, rows: list[list[Pick]]) -> list[str]:
    """What a reader needs under the table: profile, seeds, marks, significance, gaps, older versions."""
    ranked = [m for m in table.metrics if m.goal() != "none"]
    stars = [m.header for m in ranked if m.mark == "star"]
    best = "best in bold" if ranked and not stars else "best marked *" if ranked else "no best marked"
    if stars and len(stars) < len(ranked):
        best = f"best in bold, or marked * in {', '.join(stars)}"
    notes = [
        f"profile: {table.profile or 'default'}; {len(spec.seeds)} seed(s) per row; mean ± std over seeds; {best}."
    ]
    counts = [len(v.values) for row in table.values for v in row]
    if counts and max(counts) >= 2:
        notes.append(
            f"† not significantly different from the best in its column "
            f"(Welch's t-test, two-sided, p ≥ {table.alpha:g}); rows with fewer than two "
            "finished seeds are not tested."
        )
    else:
        notes.append("One finished seed per row: whether the differences are significant cannot be assessed.")
    shows_label = any(c.key == "label" for c in spec.table.columns)

    def name(cell: Cell) -> str:  # as a reader finds the row in the table
        return cell.label if shows_label else f"row {cell.row + 1} ({cell.label})"

    gaps = [
        f"{name(r[0].cell)}: " + ", ".join(f"seed {p.cell.seed} {p.state}" for p in r if p.state != "finished")
        for r in rows
        if 0 < sum(p.state == "finished" for p in r) < len(r)
    ]
    if gaps:
        notes.append("Seeds without a result: " + "; ".join(gaps) + ".")
    older = [
        f"{name(p.cell)} seed {p.cell.seed} (cell {p.run.data.tags.get(Tag.CELL, '?')})"
        for r in rows
        for p in r
        if p.older
    ]
    if older:
        notes.append("Includes runs of older spec versions (--all-versions): " + "; ".join(older) + ".")
    notes += data_notes(table, [name(r[0].cell) for r in rows])
    names = [name(r[0].cell) for r in rows]
    notes += code_notes([[p.run.data.tags for p in r if p.state == "finished"] for r in rows], names)
    return notes + reported_notes(table, names)


def reported_notes(table: Table, names: list[str]) -> list[str]:
    """What rep. and the tolerance mean, one line each, then the verdict; a smoke profile says what it is for instead."""
    judged = verdicts(table) if table.reported_mode != "off" else []
    if not judged:
        return []
    shown = (
        "rep.: the report's printed value, then ours minus it (in points for a percent metric)."
        if table.reported_mode == "inline"
        else "Columns “…, reported”: the report's printed value, with ours minus it in brackets."
    )
    if table.smoke:
        cost = table.full_cost or "see `sweeper list`"
        return [
            shown,
            f"Smoke test (profile {table.profile}): it checks that every row trains, logs and tables end to end on a "
            "few epochs and images; its numbers are not comparable with the report's, so they stand beside them "
            "without a verdict.",
            f"The full run (the spec's own settings, no --profile): {cost}.",
        ]
    tolerance = (
        "Tolerance: a row agrees with the report when |ours − reported| ≤ max(floor, 2 × std over seeds), in printed "
        "units; the floor is the spec's `table.tolerance`, else 1 point for a percent metric and 5% of the reported "
        "value for others."
    )
    return [shown, tolerance, *(describe(v, names) for v in judged)]


def code_notes(tags: list[list[dict[str, str]]], names: list[str]) -> list[str]:
    """The user's code the rows ran (`sweeper.code.*` tags: reference@digest), and a warning where rows of one
    table ran different versions of the same file."""
    versions: dict[str, dict[str, set[str]]] = {}  # reference -> digest -> row names
    for row_tags, row in zip(tags, names):
        for run_tags in row_tags:
            for key, value in run_tags.items():
                if key.startswith(Tag.CODE):
                    reference, _, digest = value.rpartition("@")
                    versions.setdefault(reference, {}).setdefault(digest, set()).add(row)
    notes = []
    for reference, digests in sorted(versions.items()):
        if len(digests) == 1:
            notes.append(f"Code: {reference} (sha256 {next(iter(digests))}).")
            continue
        seen = "; ".join(f"{d}: {', '.join(sorted(rows))}" for d, rows in sorted(digests.items()))
        notes.append(
            f"Mixed code: rows ran different versions of {reference} ({seen}); cell ids do not include the file's "
            "content, so delete the older runs to retrain them with the current file."
        )
    return notes


def data_notes(table: Table, names: list[str]) -> list[str]:
    """Which data the rows trained on: named once when all agree, else row by row (a mixed table says so)."""
    seen = {d for row in table.datasets for d in row}
    if not seen or seen == {("", "", "")}:
        return []  # runs from before sweeper recorded their data: nothing to say either way

    def text(data: set[tuple[str, str, str]]) -> str:
        parts = []
        for dataset, digest, size in sorted(data):
            images = f"{int(size):,} training images" if size.isdigit() else "training images not recorded"
            parts.append(
                f"{dataset}, {images}" + (f", digest {digest}" if digest else "") if dataset else "not recorded"
            )
        return " + ".join(parts)

    if len(seen) == 1:
        return [f"Data: {text(seen)}."]
    per_row = [f"{n}: {text(set(row))}" for n, row in zip(names, table.datasets) if row]
    return ["Rows trained on different data (compare with care): " + "; ".join(per_row) + "."]
