"""The worker loop: claim a cell from the study, train it in its MLflow run, repeat until none is left;
`worker` and `status`, the entry points that open a sweep for it.

Rows and grids are enqueued as fixed trials (one per cell) that workers claim through the study's
storage; a `search:` samples its trials. MLflow stays the record of what is finished: a cell with a
FINISHED run is never trained again, whatever the study says.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweeper.runs import cellrun, process, tracking
from sweeper.runs.faults import StoreUnavailable
from sweeper.schema.spec import Cell, Spec, trial_cell
from sweeper.secrets import mask_uri
from sweeper.sweep import ledger, seeds
from sweeper.sweep.ledger import Snapshot, SweepReport
from sweeper.sweep.runner import CellFailed, Pruning, objective, train_cell
from sweeper.sweep.study import HEARTBEAT, Sweep, open_sweep
from sweeper.tables import summary
from sweeper.training.data import DataCache, Split
from sweeper.training.device import pick_device
from sweeper.training.report import full_cost
from sweeper.vocab import Attr

# Heartbeats, constant_liar and the retry callback are marked experimental; they are what we want.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.ERROR)  # the sweep prints its own one line per cell


# --- cell states ----------------------------------------------------------------------------


def snapshot(sw: Sweep) -> Snapshot:
    """Every cell's state from the study and MLflow (whose finished cells are done, whatever the study says)."""
    done = set(tracking.finished_cells(sw.store, sw.exp_id))
    return ledger.snapshot(sw.spec, sw.cells, sw.study.get_trials(deepcopy=False), done)


def plan(sw: Sweep, retry_failed: bool = False) -> None:
    """Enqueue what needs a worker: new and interrupted cells, and failed ones when asked to retry."""
    optuna.storages.fail_stale_trials(sw.study)  # dead workers' cells are retried by the storage's callback
    done = set(tracking.finished_cells(sw.store, sw.exp_id))
    for params, attrs in ledger.to_enqueue(sw.spec, sw.cells, sw.study.get_trials(deepcopy=False), done, retry_failed):
        sw.study.enqueue_trial(params, user_attrs=attrs)


# --- one worker -----------------------------------------------------------------------------


class _Skip(Exception):
    """Nothing to train in this trial (the queue emptied under us, or a twin claim): failed and ignored."""


def _skip(trial: optuna.Trial, why: str) -> None:
    trial.set_user_attr(Attr.SKIP, why)
    raise _Skip(why)


def _suggest(trial: optuna.Trial, key: str, p: Any) -> Any:
    if p.type == "float":
        return trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
    if p.type == "int":
        return trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
    return p.decode(trial.suggest_categorical(key, p.encoded()))  # a list choice travels as its text


def _claim(sw: Sweep, trial: optuna.Trial) -> Cell:
    """The cell a trial trains: its enqueued cell, or a freshly sampled one; twins of a running cell skip."""
    if sw.spec.search is None:
        cell = next((c for c in sw.cells if c.id == trial.user_attrs.get(Attr.CELL)), None)
        if cell is None:
            _skip(trial, "no waiting cell: another worker took the last one")
        assert cell is not None  # _skip raised otherwise
    else:
        params = {k: _suggest(trial, k, p) for k, p in sw.spec.search.params.items()}
        cell = trial_cell(sw.spec, sw.profile, params, trial.number)
        for key, value in ledger.cell_attrs(cell).items():
            trial.set_user_attr(key, value)
    running = sw.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    twin = next((t.number for t in running if t.number < trial.number and t.user_attrs.get(Attr.CELL) == cell.id), None)
    if twin is not None:  # the lower trial number wins, so exactly one of two racing claims trains
        _skip(trial, f"cell already running as trial {twin}")
    return cell


def _objective(sw: Sweep, record: cellrun.SweepRecord, device: Any, cache: DataCache, progress: Progress, worker: str):
    """The trial function: claim a cell and train its trial group (one cell a seed; runner.train_cell), taking
    from MLflow what it already has; the value is the seeds' mean, per objective."""
    targets, watch = objective(sw.spec)

    def train_seed(trial: optuna.Trial, cell: Cell, index: int, curves: seeds.Curves) -> list[float]:
        finished = tracking.finished_cells(sw.store, sw.exp_id).get(cell.id)
        if finished is None:
            pruning = Pruning(watch, curves, index, enabled=len(targets) == 1)  # Optuna prunes one objective only
            done = train_cell(record, cell, trial, cache.for_cell(cell), device, progress, pruning)
            return [done[m] for m in targets]
        if index == 0:  # a trial's run is its first seed's; MLflow is the record: never trained twice
            trial.set_user_attr(Attr.MLFLOW_RUN, finished.info.run_id)
        lacking = [m for m in targets if m not in finished.data.metrics]
        if lacking:
            _skip(trial, f"cell finished in MLflow run {finished.info.run_id} without {', '.join(lacking)}")
        curves.record(index, tracking.metric_history(sw.store, finished.info.run_id, watch))
        return [finished.data.metrics[m] for m in targets]

    def run_trial(trial: optuna.Trial) -> float | list[float]:
        try:
            cell = _claim(sw, trial)
            trial.set_user_attr(Attr.WORKER, worker)
            group = seeds.group_of(sw.spec, sw.profile, cell, trial.params, trial.number)  # a search over seeds: >1
            curves = seeds.Curves(group)
            return seeds.objective([train_seed(trial, c, i, curves) for i, c in enumerate(group)])
        except (KeyboardInterrupt, StoreUnavailable):
            with contextlib.suppress(Exception):  # a full disk may refuse this too: the trial then goes stale
                trial.set_user_attr(Attr.INTERRUPTED, True)  # the next run resumes it, no --retry-failed needed
            raise

    return run_trial


def _next_step(sw: Sweep, deadline: float | None) -> str:
    """train (a cell waits, or the search has budget), wait (others still run: they may die), or stop."""
    optuna.storages.fail_stale_trials(sw.study)  # dead workers' cells go back to the queue
    trials = sw.study.get_trials(deepcopy=False)
    states = {t.state.name for t in trials}
    if "WAITING" in states:
        return "train"
    search = sw.spec.search
    if search is not None and (deadline is None or time.monotonic() < deadline):
        budget = search.budget()
        if budget is None or ledger.budget_used(trials) < budget:
            return "train"
    return "wait" if "RUNNING" in states else "stop"


def work(
    sw: Sweep,
    *,
    device: str = "auto",
    data: tuple[Split, Split] | None = None,
    console: Console | None = None,
    worker: str | None = None,
) -> SweepReport:
    """Claim and train cells until none is left, waiting while other workers' cells may still fail over."""
    console = console or Console()
    torch_device = pick_device(device)
    before = snapshot(sw)
    if before.idle():
        console.print(f"[green]{sw.spec.name}: all {before.total} cells already done or closed; nothing to train.[/]")
        return ledger.report(sw.spec, before, before)
    cache = DataCache(data)
    cache.for_cell(sw.cells[0] if sw.cells else _probe(sw))  # a missing dataset fails before any run
    parent = tracking.sweep_run(
        sw.store, sw.exp_id, sw.spec, sw.profile, sw.path.read_text(), cellrun.environment_tags()
    )
    record = cellrun.SweepRecord(sw.store, sw.exp_id, parent, sw.spec, sw.profile)
    console.print(
        f"{sw.spec.name}: {before.count('left')} cells to train on {torch_device} "
        f"({before.count('done')} done) -> {mask_uri(sw.store.uri)}, study {sw.name}"
    )
    timeout = sw.spec.search.timeout if sw.spec.search else None
    deadline = time.monotonic() + timeout if timeout else None
    status, columns = (
        "KILLED",
        [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()],
    )
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("cells", total=before.count("left") if before.extra_left is not None else None)
            trial = _objective(sw, record, torch_device, cache, progress, worker or process.worker_id())
            while (step := _next_step(sw, deadline)) != "stop":
                if step == "train":
                    sw.study.optimize(trial, n_trials=1, catch=(CellFailed, _Skip))
                    summary.refresh(sw.path, sw.profile, sw.store.uri, lambda: full_cost(sw.spec))  # parent's table
                    progress.update(task, completed=before.count("left") - snapshot(sw).count("left"))
                else:
                    time.sleep(1.0)
        status = "FINISHED"
    finally:
        after = close_parent(sw, parent, status)
    return ledger.report(sw.spec, before, after)


def close_parent(sw: Sweep, parent: str, status: str) -> Snapshot:
    """End the sweep's MLflow run when this worker stops it (Ctrl-C) or nothing is left for anyone."""
    after = snapshot(sw)
    if status == "KILLED" or not after.pending():
        tracking.end_run(sw.store, parent, "FAILED" if status == "FINISHED" and after.count("failed") else status)
    return after


def _probe(sw: Sweep) -> Cell:
    """A search's cell at the low edge of every range: enough to load its data before sampling."""
    assert sw.spec.search is not None
    return trial_cell(sw.spec, sw.profile, {k: p.bounds()[0] for k, p in sw.spec.search.params.items()})


# --- the entry points a worker and `status` call -----------------------------------------------


def worker(
    spec_path: str | Path,
    profile: str | None = None,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    heartbeat: int = HEARTBEAT,
    index: int | None = None,
    console: Console | None = None,
) -> SweepReport:
    """One worker of a sweep (of `sweeper run --workers`, a SLURM task, or one per machine on a shared storage)."""
    if threads:  # the trainer reads SWEEPER_THREADS: a fixed share, not "auto"
        os.environ["SWEEPER_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    offset = index if index is not None else os.getpid()  # seeded samplers must differ between workers
    sw = open_sweep(
        spec_path,
        profile,
        storage=storage,
        tracking_uri=tracking_uri,
        heartbeat=heartbeat,
        seed_offset=offset,
        check_data=True,
    )
    plan(sw)
    name = process.worker_id() + (f" #{index}" if index is not None else "")
    return work(sw, device=device, console=console, worker=name)


def status(
    spec_path: str | Path, profile: str | None = None, *, storage: str | None = None, tracking_uri: str | None = None
) -> tuple[Snapshot, Spec]:
    """Cells done, running, failed, pruned and left, from the study and MLflow; and the spec it read."""
    sw = open_sweep(spec_path, profile, storage=storage, tracking_uri=tracking_uri)
    return snapshot(sw), sw.spec
