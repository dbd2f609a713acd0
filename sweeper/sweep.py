"""Run every cell of a spec that has no finished run yet, logging each to MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweeper import tracking
from sweeper.data import CifarData, Split, load_cached, make_splits
from sweeper.settings import get_settings
from sweeper.spec import Cell, expand, load_spec


@dataclass
class SweepReport:
    """What one `sweeper run` did."""

    spec: str
    total: int
    skipped: int = 0
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class DataCache:
    """The full train/test tensors, loaded once, and the splits each distinct data config asks for."""

    def __init__(self, base: tuple[Split, Split] | None = None):
        self._base = base
        self._splits: dict[tuple, CifarData] = {}

    def for_cell(self, cell: Cell) -> CifarData:
        """Train/val/test of a cell; the split is fixed (seed 0) so seeds vary only the training."""
        d = cell.config.data
        key = (d.val_size, d.train_size, d.test_size)
        if key not in self._splits:
            if self._base is None:
                self._base = load_cached(get_settings().data_dir)
            train, test = self._base
            self._splits[key] = make_splits(
                train, test, val_size=d.val_size, train_size=d.train_size, test_size=d.test_size, seed=0
            )
        return self._splits[key]


def run(
    spec_path: str | Path,
    profile: str | None = None,
    *,
    tracking_uri: str | None = None,
    device: str = "auto",
    data: tuple[Split, Split] | None = None,
    console: Console | None = None,
) -> SweepReport:
    """Train the spec's unfinished cells in table order; finished cells are never re-run."""
    from sweeper.runner import run_cell
    from sweeper.train import pick_device

    console = console or Console()
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    spec_text = spec_path.read_text()
    cells = expand(spec, profile)
    torch_device = pick_device(device)
    cache = DataCache(data)
    store = tracking.open_store(tracking_uri)
    exp_id = tracking.experiment_id(store, spec.name)
    done = tracking.finished_cells(store, exp_id)
    todo = [cell for cell in cells if cell.id not in done]
    report = SweepReport(spec=spec.name, total=len(cells), skipped=len(cells) - len(todo))
    if not todo:
        console.print(f"[green]{spec.name}: all {len(cells)} cells already finished; nothing to train.[/]")
        return report
    cache.for_cell(todo[0])  # a missing dataset fails here, before any run is written
    parent = tracking.sweep_run(store, exp_id, spec, profile, spec_text)
    console.print(
        f"{spec.name}: {len(todo)} of {len(cells)} cells to train on {torch_device} "
        f"({report.skipped} already finished) -> {store.uri}"
    )
    status = "FINISHED"
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            overall = progress.add_task("cells", total=len(todo))
            for cell in todo:
                outcome = run_cell(cell, spec, profile, store, exp_id, parent, cache.for_cell(cell), torch_device, progress)
                (report.finished if outcome.ok else report.failed).append(outcome.name)
                progress.advance(overall)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracking.end_run(store, parent, status if not report.failed else "FAILED")
    return report
