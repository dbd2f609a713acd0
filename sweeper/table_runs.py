"""Which tracked run stands for each cell of a table: the spec, its sweep run, and the cell runs.

Only runs of the current spec version count: a cell is found by the hash of its resolved config.
With `all_versions`, a cell that has no finished run of its own may take the newest finished run of
an older version of the same row (matched by the row label and seed tags). A search's rows are
the trials that ran, rebuilt from their sampled params.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper import tracking
from sweeper.errors import UserError
from sweeper.spec import Cell, Spec, load_spec, parse_spec, trial_cell


@dataclass
class Pick:
    """The run that stands for one cell: its state, and whether it comes from an older spec version."""

    cell: Cell
    state: str  # finished | running | failed | pruned | interrupted | missing
    run: Any = None
    older: bool = False


def resolve_spec(name_or_path: str, store: tracking.Store, profile: str | None) -> tuple[Spec, str | None]:
    """The spec of a table: a YAML path as given, else the one logged by the named sweep."""
    spec, profile, _ = resolve(name_or_path, store, profile)
    return spec, profile


def resolve(name_or_path: str, store: tracking.Store, profile: str | None) -> tuple[Spec, str | None, str | None]:
    """(spec, profile, parent run id or None) from a spec path or a sweep name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        spec = load_spec(path)
        exp_id = tracking.experiment_id(store, spec.name, create=False)
        sweeps = tracking.sweep_runs(store, exp_id) if exp_id else []
        if profile is None:
            tag = sweeps[0].data.tags.get("sweeper.profile") if sweeps else None
            profile = None if tag in (None, "default") else tag
        parent = next((s for s in sweeps if s.data.tags.get("sweeper.profile") == (profile or "default")), None)
        return spec, profile, parent.info.run_id if parent else None
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
        ran = sorted({s.data.tags.get("sweeper.profile", "?") for s in sweeps})
        raise UserError(f"sweep '{name_or_path}' has never run with profile '{wanted}' in {store.uri} "
                        f"(profiles run: {', '.join(ran) or 'none'}).")
    run_id = match[0].info.run_id
    text = tracking.read_text_artifact(store, run_id, "spec.yaml")
    spec = parse_spec(text, Path(f"{name_or_path} (spec logged in MLflow run {run_id})"))
    return spec, None if wanted == "default" else wanted, run_id


def run_state(run: Any) -> str:
    """A run's state as the table shows it; a KILLED run tagged as pruned was stopped by the pruner."""
    status, tags = run.info.status, run.data.tags
    if status == "KILLED":
        pruned = tags.get(tracking.TAG + "state") == "pruned" or tracking.TAG + "pruned" in tags
        return "pruned" if pruned else "interrupted"
    return {"FINISHED": "finished", "FAILED": "failed"}.get(status, "running")


def pick_runs(cells: list[Cell], runs: list[Any], profile: str | None, all_versions: bool) -> list[Pick]:
    """The run standing for each cell: its newest finished run, else its newest run's state, else missing."""
    by_cell: dict[str, list[Any]] = {}
    by_label: dict[tuple[str, str], list[Any]] = {}
    for run in runs:  # newest first
        tags = run.data.tags
        by_cell.setdefault(tags.get(tracking.TAG + "cell", ""), []).append(run)
        if all_versions and tags.get(tracking.TAG + "profile") == (profile or "default") and run.info.status == "FINISHED":
            by_label.setdefault((tags.get(tracking.TAG + "row", ""), tags.get(tracking.TAG + "seed", "")), []).append(run)
    picks = []
    for cell in cells:
        own = by_cell.get(cell.id, [])
        finished = [r for r in own if r.info.status == "FINISHED"]
        older = by_label.get((cell.label, str(cell.seed)), [])
        if finished:
            picks.append(Pick(cell, "finished", finished[0]))
        elif older:
            picks.append(Pick(cell, "finished", older[0], older=True))
        else:
            picks.append(Pick(cell, run_state(own[0]) if own else "missing", own[0] if own else None))
    return picks


def cell_runs(store: tracking.Store, exp_id: str | None, profile: str | None) -> list[Any]:
    """The child runs of one profile, newest first: a store often holds a spec's quick and full runs."""
    if exp_id is None:
        return []
    where = f"tags.`{tracking.TAG}role` = 'cell' and tags.`{tracking.TAG}profile` = '{profile or 'default'}'"
    with gc_paused():
        return tracking.search(store, exp_id, where)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC for a bulk read: MLflow builds ~60 ORM objects per run, and the collector's
    repeated full passes over them took ~70% of a 1,000-run search (benchmarks/table_speed.py)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def trial_cells(spec: Spec, profile: str | None, runs: list[Any]) -> list[Cell]:
    """A search's rows are the trials that ran, in trial order, rebuilt from each run's sampled params."""
    first: dict[str, Any] = {}
    for run in reversed(runs):  # oldest first: a trial's number is fixed when it starts
        first.setdefault(run.data.tags.get(tracking.TAG + "cell", ""), run)
    cells = []
    for run in sorted(first.values(), key=lambda r: int(r.data.tags.get(tracking.TAG + "trial", 0))):
        missing = [k for k in spec.search.params if k not in run.data.params]
        if missing:
            raise UserError(f"run {run.info.run_id} of search '{spec.name}' has no param {', '.join(missing)}.")
        params = {k: _parsed(p, run.data.params[k]) for k, p in spec.search.params.items()}
        cells.append(trial_cell(spec, profile, params, int(run.data.tags.get(tracking.TAG + "trial", 0))))
    return cells


def _parsed(param: Any, raw: str) -> Any:
    """A sampled value back from its MLflow param text (str() of a float round-trips exactly)."""
    if param.type == "float":
        return float(raw)
    if param.type == "int":
        return int(raw)
    return next((c for c in param.choices if str(c) == raw), raw)
