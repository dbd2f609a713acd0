"""A table's runs: the spec, its sweep run, and the cell runs; runs/cells.py says which stands for each cell.

Only runs of the current spec version count: a cell is found by the hash of its resolved config, in
runs of any profile. With `all_versions`, a cell that has no finished run of its own may take the
newest finished run of an older version of the same row (matched by the row label and seed tags).
A search's rows are the trials that ran, rebuilt from their sampled params.

Runs are read through `Runs`: runs_db's reader of MLflow's database where it can read the store
(no `import mlflow`: `sweeper table` in well under 2 s), else MlflowClient (`MlflowRuns`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sweeper.errors import UserError
from sweeper.runs import db as runs_db
from sweeper.runs.cells import Pick, pick_runs, run_state  # noqa: F401 - the table's API
from sweeper.schema.spec import Cell, Spec, load_spec, parse_spec, trial_group
from sweeper.secrets import mask_uri
from sweeper.settings import get_settings
from sweeper.vocab import DEFAULT_PROFILE, Tag, profile_tag

T = TypeVar("T")


class Runs(Protocol):
    """The reads a table needs from a store; runs are shaped like MLflow's Run, newest first."""

    uri: str

    def experiment_id(self, name: str) -> str | None: ...
    def experiment_names(self) -> list[str]: ...
    def search(self, exp_id: str, role: str, profile: str | None = None) -> list[Any]: ...
    def text_artifact(self, run: Any, path: str) -> str: ...


def read_runs(tracking_uri: str | None, read: Callable[[Runs], T]) -> T:
    """read(runs) on runs_db's reader where it can read the store, else (or when it backs out) MlflowClient."""
    uri = get_settings().resolved_tracking_uri(tracking_uri)
    reader = runs_db.open_reader(uri)
    if reader is not None:
        try:
            return read(reader)
        except runs_db.Unsupported:
            pass  # reads only: starting over through MlflowClient is safe
        finally:
            reader.close()
    # Here only: importing MLflow costs ~3 s of a ~4 s `sweeper table`, and the reader above avoids it.
    from sweeper.runs import tracking

    return read(tracking.MlflowRuns(tracking.open_store(uri, create=False)))  # a read creates no store


def resolve_spec(name_or_path: str, runs: Runs, profile: str | None) -> tuple[Spec, str | None]:
    """The spec of a table: a YAML path as given, else the one logged by the named sweep."""
    spec, profile, _ = resolve(name_or_path, runs, profile)
    return spec, profile


def resolve(name_or_path: str, runs: Runs, profile: str | None) -> tuple[Spec, str | None, str | None]:
    """(spec, profile, parent run id or None) from a spec path or a sweep name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        spec = load_spec(path)
        exp_id = runs.experiment_id(spec.name)
        sweeps = runs.search(exp_id, "sweep") if exp_id else []
        if profile is None:
            tag = sweeps[0].data.tags.get(Tag.PROFILE) if sweeps else None
            profile = None if tag in (None, DEFAULT_PROFILE) else tag
        parent = next((s for s in sweeps if s.data.tags.get(Tag.PROFILE) == profile_tag(profile)), None)
        return spec, profile, parent.info.run_id if parent else None
    exp_id = runs.experiment_id(name_or_path)
    if exp_id is None:
        known = [name for name in runs.experiment_names() if name != "Default"]
        raise UserError(
            f"no sweep named '{name_or_path}' in {mask_uri(runs.uri)} (sweeps there: {', '.join(known) or 'none'}). "
            f"Run `sweeper run experiments/{name_or_path}.yaml` first, or pass the spec's path."
        )
    sweeps = runs.search(exp_id, "sweep")
    wanted = profile or (sweeps[0].data.tags.get(Tag.PROFILE) if sweeps else None)
    match = [s for s in sweeps if s.data.tags.get(Tag.PROFILE) == profile_tag(wanted)]
    if not match:
        ran = sorted({s.data.tags.get(Tag.PROFILE, "?") for s in sweeps})
        raise UserError(
            f"sweep '{name_or_path}' has never run with profile '{wanted}' in {mask_uri(runs.uri)} "
            f"(profiles run: {', '.join(ran) or 'none'})."
        )
    run_id = match[0].info.run_id
    text = runs.text_artifact(match[0], "spec.yaml")
    spec = parse_spec(text, Path(f"{name_or_path} (spec logged in MLflow run {run_id})"), strict=False)
    return spec, None if wanted == DEFAULT_PROFILE else wanted, run_id


def cell_runs(runs: Runs, exp_id: str | None) -> list[Any]:
    """The child runs of every profile, newest first: a cell another profile finished counts here too."""
    if exp_id is None:
        return []
    with gc_paused():
        return runs.search(exp_id, "cell")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC for a bulk read: MLflow builds ~60 ORM objects per run (runs_db fewer), and the
    collector's repeated full passes over them took ~70% of a 1,000-run search (benchmarks/table_speed.py)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def trial_cells(spec: Spec, profile: str | None, runs: list[Any]) -> list[Cell]:
    """A search's rows are the trials that ran in this profile's study, in trial order, rebuilt from each
    run's sampled params: one cell per seed of the profile (a search over seeds trains each trial's
    configuration once per seed)."""
    assert spec.search is not None
    first: dict[tuple[str | None, ...], Any] = {}
    for run in reversed(runs):  # oldest first: a trial's number is fixed when it starts
        if run.data.tags.get(Tag.PROFILE) != profile_tag(profile):
            continue
        first.setdefault(tuple(run.data.params.get(k) for k in spec.search.params), run)  # one per configuration
    cells = []
    for run in sorted(first.values(), key=lambda r: int(r.data.tags.get(Tag.TRIAL, 0))):
        missing = [k for k in spec.search.params if k not in run.data.params]
        if missing:
            raise UserError(f"run {run.info.run_id} of search '{spec.name}' has no param {', '.join(missing)}.")
        params = {k: _parsed(p, run.data.params[k]) for k, p in spec.search.params.items()}
        cells += trial_group(spec, profile, params, int(run.data.tags.get(Tag.TRIAL, 0)))
    return cells


def _parsed(param: Any, raw: str) -> Any:
    """A sampled value back from its MLflow param text (str() of a float round-trips exactly)."""
    if param.type == "float":
        return float(raw)
    if param.type == "int":
        return int(raw)
    return next((c for c in param.choices if str(c) == raw), raw)
