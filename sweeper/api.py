"""sweeper from Python (a notebook, a script): run a spec, read its table and its runs as data.

    import sweeper
    sweeper.run("experiments/activations.yaml", profile="quick")
    sweeper.table("experiments/activations.yaml").to_pandas()
    sweeper.cell_runs("activations")           # one row per cell run: params, metrics, tags, state

Without a tracking URI (argument or $MLFLOW_TRACKING_URI), the store is the spec's project's: the
nearest folder above the spec (or above the working directory, for a sweep name) that holds an
`mlruns/` or an `experiments/` folder. A notebook in `notebooks/` so finds the store that
`sweeper run` made from the project's root. What was found is printed once per store.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.secrets import mask_uri
from sweeper.settings import get_settings

if TYPE_CHECKING:  # pandas, torch and the sweep engine load on first use: `import sweeper` stays cheap
    import pandas as pd

    from sweeper.sweep.ledger import SweepReport
    from sweeper.tables.table import Table as TableData
    from sweeper.training.data import Split

_announced: set[str] = set()


def project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above `start` (a spec file or a folder; default the working directory) holding
    `mlruns/` or `experiments/`; None when there is none."""
    here = Path(start).expanduser().resolve() if start is not None else Path.cwd()
    if here.is_file() or here.suffix in (".yaml", ".yml"):
        here = here.parent
    for folder in (here, *here.parents):
        if (folder / "mlruns").is_dir() or (folder / "experiments").is_dir():
            return folder
    return None


def find_store(spec: str | Path | None = None, tracking_uri: str | None = None, *, quiet: bool = False) -> str:
    """The tracking URI a call uses: the one given, else $MLFLOW_TRACKING_URI, else the project's
    mlruns/mlflow.db (see project_root), else ./mlruns as the CLI does. Printed the first time it is found."""
    settings = get_settings()
    if tracking_uri or settings.tracking_uri or "SWEEPER_STORE_DIR" in os.environ:
        uri, why = settings.resolved_tracking_uri(tracking_uri), "as given"
    else:
        root = project_root(spec if spec is not None and _is_path(spec) else None)
        uri = settings.resolved_tracking_uri(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}" if root else None)
        why = f"the project at {root}" if root else "no project folder found above; the working directory's"
    if uri not in _announced and not quiet:
        _announced.add(uri)
        print(f"sweeper: store {mask_uri(uri)} ({why})", file=sys.stderr)
    return uri


def _is_path(spec: str | Path) -> bool:
    """A spec path rather than a sweep name."""
    path = Path(spec)
    return path.suffix in (".yaml", ".yml") or path.exists()


@contextmanager
def _project_data(spec: str | Path) -> Iterator[None]:
    """Point $SWEEPER_DATA_DIR at the project's data/ for the call, when it is unset and that folder exists."""
    root = project_root(spec if _is_path(spec) else None)
    if "SWEEPER_DATA_DIR" in os.environ or root is None or not (root / "data").is_dir():
        yield
        return
    os.environ["SWEEPER_DATA_DIR"] = str(root / "data")
    try:
        yield
    finally:
        os.environ.pop("SWEEPER_DATA_DIR", None)


def run(
    spec: str | Path,
    profile: str | None = None,
    *,
    tracking_uri: str | None = None,
    device: str = "auto",
    jobs: int | None = None,
    data: tuple[Split, Split] | None = None,
    quiet: bool = False,
) -> SweepReport:
    """Train the spec's unfinished cells (as `sweeper run`); returns what was finished, failed and pruned."""
    from rich.console import Console

    from sweeper import sweep
    from sweeper.sweep.answer import announce

    uri = find_store(spec, tracking_uri, quiet=quiet)
    console = Console(quiet=quiet)
    with _project_data(spec):
        report = sweep.run(spec, profile, tracking_uri=uri, device=device, data=data, jobs=jobs, console=console)
        announce(spec, profile, uri, console)
    return report


@dataclass
class Results:
    """A built table: `to_pandas()` for its numbers, `markdown()` for the report's text, `.data` for the Table."""

    data: TableData

    def records(self) -> list[dict[str, Any]]:
        """One dict per row (label, identifying columns, then KEY.mean, KEY.std, ... per metric)."""
        from sweeper.tables.raw import records

        return records(self.data)

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a DataFrame indexed by label; numbers in logged units, one column per metric field."""
        import pandas as pd

        return pd.DataFrame(self.records()).set_index("label")

    def markdown(self) -> str:
        """The table as `sweeper table` prints it."""
        from sweeper.tables.formats import render

        return render(self.data, "markdown")

    def _repr_markdown_(self) -> str:  # Jupyter shows the table as the report would
        return self.markdown()


def table(
    spec: str | Path,
    profile: str | None = None,
    *,
    tracking_uri: str | None = None,
    all_versions: bool = False,
    reported: str = "inline",
) -> Results:
    """The spec's table from the tracked runs (a spec path or a sweep name), as `sweeper table` builds it."""
    from sweeper import tables

    uri = find_store(spec, tracking_uri)
    return Results(tables.build(str(spec), profile, uri, all_versions=all_versions, reported=reported))


def cell_runs(spec: str | Path, profile: str | None = None, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every cell run of a sweep's profile, newest first: run_id, state, label, seed, trial, start and end
    times, then params.*, metrics.* (last values) and tags.* columns, as mlflow.search_runs names them."""
    import pandas as pd

    from sweeper.schema.spec import expand
    from sweeper.tables.runs import cell_runs as runs_of
    from sweeper.tables.runs import read_runs, resolve, run_state
    from sweeper.vocab import Tag, profile_tag

    uri = find_store(spec, tracking_uri)

    def read(store: Any) -> list[dict[str, Any]]:
        sweep, chosen, _ = resolve(str(spec), store, profile)
        # the profile's cells, whichever profile trained them (a cell is its config), and its own search trials
        ids = {c.id for c in expand(sweep, chosen)}
        found = [
            r
            for r in runs_of(store, store.experiment_id(sweep.name))
            if r.data.tags.get(Tag.CELL) in ids or r.data.tags.get(Tag.PROFILE) == profile_tag(chosen)
        ]
        return [
            {
                "run_id": r.info.run_id,
                "state": run_state(r),
                "label": r.data.tags.get(Tag.ROW),
                "seed": _int(r.data.tags.get(Tag.SEED)),
                "trial": _int(r.data.tags.get(Tag.TRIAL)),
                "start_time": pd.to_datetime(r.info.start_time, unit="ms") if r.info.start_time else None,
                "end_time": pd.to_datetime(r.info.end_time, unit="ms") if r.info.end_time else None,
                **{f"params.{k}": v for k, v in r.data.params.items()},
                **{f"metrics.{k}": v for k, v in r.data.metrics.items()},
                **{f"tags.{k}": v for k, v in r.data.tags.items()},
            }
            for r in found
        ]

    return pd.DataFrame(read_runs(uri, read))


def _int(text: str | None) -> int | None:
    """A numeric tag as an int, None when absent."""
    return int(text) if text not in (None, "") else None
