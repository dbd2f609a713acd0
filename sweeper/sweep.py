"""Run a spec's cells as trials of one Optuna study per (spec, profile), on one worker or many.

Rows and grids are enqueued as fixed trials (one per cell) that workers claim through the study's
storage; a `search:` samples its trials. MLflow stays the record of what is finished: a cell with a
FINISHED run is never trained again, whatever the study says. Only this module imports optuna.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweeper import ledger, tracking
from sweeper.data import CifarData, Split, cached_source, load_cached, make_splits
from sweeper.errors import Pruned, UserError
from sweeper.ledger import A, Snapshot, SweepReport
from sweeper.settings import get_settings
from sweeper.spec import Cell, Spec, expand, load_spec, trial_cell

# Heartbeats, constant_liar and the retry callback are marked experimental; they are what we want.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.ERROR)  # the sweep prints its own one line per cell

HEARTBEAT = 10  # seconds between a worker's heartbeats; silent for 3x this, its cell is handed on
MAX_RETRY = 2  # times a cell whose worker died is handed to another worker
__all__ = ["SweepReport", "Snapshot", "run", "worker", "status", "open_sweep"]


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


# --- the study and its storage --------------------------------------------------------------


def local_dir(tracking_uri: str) -> Path:
    """Where local sweep state lives: beside a sqlite MLflow store, else the store dir (mlruns/)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent
    return get_settings().store_dir


def storage_url(storage: str | None, tracking_uri: str) -> str:
    """The study's storage: as given (postgresql:// gets the psycopg 3 driver), else sqlite beside MLflow."""
    if not storage:
        folder = local_dir(tracking_uri)
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(folder / 'optuna.db').resolve()}"
    if storage.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + storage.split("://", 1)[1]
    return storage


def _serialize_sqlite(engine: Any) -> None:
    """Take sqlite's write lock at BEGIN, so that two processes cannot both claim one waiting trial."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the begin hook below issue BEGIN

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections predate the hooks


def open_storage(url: str, heartbeat: int = HEARTBEAT) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats: a trial silent for 3 heartbeats is failed and retried."""
    from sqlalchemy.engine import make_url

    sqlite = url.startswith("sqlite")
    kwargs = {"connect_args": {"timeout": 120}} if sqlite else {"pool_pre_ping": True}
    shown = url
    for attempt in range(3):  # workers starting together race to create the tables; the loser retries
        try:
            shown = make_url(url).render_as_string(hide_password=True)
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
            break
        except Exception as exc:  # noqa: BLE001 - bad URL, missing driver, unreachable server: all the user's to fix
            if attempt < 2 and not isinstance(exc, (ImportError, ValueError)):
                time.sleep(1 + attempt)
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UserError(
                f"cannot open the sweep storage {shown} ({type(exc).__name__}: {first[:300]}). Use "
                "postgresql://USER:PASSWORD@HOST:PORT/DB for a shared database, or drop --storage for the "
                "local sqlite file beside the MLflow store."
            ) from None
    if sqlite:
        _serialize_sqlite(storage.engine)
    return storage


def study_name(spec: Spec, profile: str | None) -> str:
    """One study per (spec, profile); a search's name also hashes what it searches, so edits start afresh."""
    name = f"{spec.name}/{profile or 'default'}"
    if spec.search is None:
        return name
    blob = json.dumps([spec.base, spec.profiles.get(profile or "", {}), spec.seeds, spec.search.model_dump(mode="json")],
                      sort_keys=True, default=str)
    return f"{name}/search-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


@dataclass
class Sweep:
    """One (spec, profile): its cells, its MLflow experiment and its Optuna study."""

    spec: Spec
    path: Path
    profile: str | None
    store: tracking.Store
    exp_id: str
    study: optuna.Study
    cells: list[Cell]  # rows and grids; a search's cells come from its trials

    @property
    def name(self) -> str:
        """The study name, also tagged on every MLflow child run."""
        return self.study.study_name


def open_sweep(spec_path: str | Path, profile: str | None = None, *, storage: str | None = None,
               tracking_uri: str | None = None, heartbeat: int = HEARTBEAT, seed_offset: int = 0,
               check_data: bool = False) -> Sweep:
    """Validate the spec (and that the dataset is prepared), then connect MLflow and the study (created on first use)."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    cells = expand(spec, profile)
    if check_data:  # a missing dataset fails before any store, study or run is created
        cached_source(get_settings().data_dir)
    store = tracking.open_store(tracking_uri)
    search = spec.search
    seed = None if search is None or search.seed is None else search.seed + seed_offset
    direction = search.objective.direction if search else "maximize"
    study = optuna.create_study(
        storage=open_storage(storage_url(storage, store.uri), heartbeat), study_name=study_name(spec, profile),
        direction=direction, sampler=_sampler(spec, seed), pruner=_pruner(spec), load_if_exists=True,
    )
    return Sweep(spec, spec_path, profile, store, tracking.experiment_id(store, spec.name), study, cells)


def _sampler(spec: Spec, seed: int | None) -> optuna.samplers.BaseSampler:
    s = spec.search
    if s is None or s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.sampler == "grid":
        return optuna.samplers.GridSampler(s.grid_space(), seed=seed)
    if s.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)  # the liar keeps parallel workers apart


def _pruner(spec: Spec) -> optuna.pruners.BasePruner:
    p = spec.search.pruner if spec.search else None
    if p is None or p.name == "none":
        return optuna.pruners.NopPruner()
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor)
    return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor)


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


class _CellFailed(Exception):
    """The cell raised: its MLflow run is FAILED with the error, the trial FAIL with it."""


class _Skip(Exception):
    """Nothing to train in this trial (the queue emptied under us, or a twin claim): failed and ignored."""


def _skip(trial: optuna.Trial, why: str) -> None:
    trial.set_user_attr(A + "skip", why)
    raise _Skip(why)


def _suggest(trial: optuna.Trial, key: str, p: Any) -> Any:
    if p.type == "float":
        return trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
    if p.type == "int":
        return trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
    return trial.suggest_categorical(key, p.choices)


def _claim(sw: Sweep, trial: optuna.Trial) -> Cell:
    """The cell a trial trains: its enqueued cell, or a freshly sampled one; twins of a running cell skip."""
    if sw.spec.search is None:
        cell = next((c for c in sw.cells if c.id == trial.user_attrs.get(A + "cell")), None)
        if cell is None:
            _skip(trial, "no waiting cell: another worker took the last one")
    else:
        params = {k: _suggest(trial, k, p) for k, p in sw.spec.search.params.items()}
        cell = trial_cell(sw.spec, sw.profile, params, trial.number)
        for key, value in ledger.cell_attrs(cell).items():
            trial.set_user_attr(key, value)
    running = sw.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    twin = next((t.number for t in running if t.number < trial.number and t.user_attrs.get(A + "cell") == cell.id), None)
    if twin is not None:  # the lower trial number wins, so exactly one of two racing claims trains
        _skip(trial, f"cell already running as trial {twin}")
    return cell


def _link_run(sw: Sweep, trial: optuna.Trial) -> bool:
    """Record the MLflow run id of this trial's cell on the trial."""
    found = tracking.search(sw.store, sw.exp_id, f"tags.`{A}study` = '{sw.name}' and tags.`{A}trial` = '{trial.number}'")
    if found:
        trial.set_user_attr(A + "mlflow_run", found[0].info.run_id)
    return bool(found)


def _objective(sw: Sweep, parent: str, device: Any, cache: DataCache, progress: Progress, worker: str):
    """The trial function: claim a cell, train it (reporting each epoch to the pruner), return the metric."""
    from sweeper.runner import run_cell

    objective = sw.spec.search.objective if sw.spec.search else None
    metric, watch = (objective.metric, objective.epoch_metric()) if objective else ("best_val_acc", "val_acc")

    def train_cell(trial: optuna.Trial) -> float:
        cell = _claim(sw, trial)
        trial.set_user_attr(A + "worker", worker)
        finished = tracking.finished_cells(sw.store, sw.exp_id).get(cell.id)
        if finished is not None:  # MLflow is the record: a finished cell is never trained again
            trial.set_user_attr(A + "mlflow_run", finished.info.run_id)
            if metric not in finished.data.metrics:
                _skip(trial, f"cell finished in MLflow run {finished.info.run_id} without {metric}")
            return finished.data.metrics[metric]
        linked = []

        def on_epoch(metrics: dict[str, float]) -> None:
            epoch, value = int(metrics["epoch"]), metrics.get(watch, math.nan)
            if not linked:  # a retried trial carries its dead twin's attrs: look the run up afresh
                linked.append(_link_run(sw, trial))
            trial.set_user_attr(A + "epoch", epoch)
            if math.isfinite(value):
                trial.report(value, epoch)
                if trial.should_prune():
                    raise Pruned(f"pruned at epoch {epoch}: {watch} {value:.4f}")

        outcome = run_cell(cell, sw.spec, sw.profile, sw.store, sw.exp_id, parent, cache.for_cell(cell), device,
                           progress, on_epoch_hook=on_epoch, extra_tags={A + "study": sw.name, A + "trial": str(trial.number)})
        if not linked:
            _link_run(sw, trial)
        if outcome.pruned:
            raise optuna.TrialPruned(outcome.error)
        if not outcome.ok:
            trial.set_user_attr(A + "error", outcome.error)
            raise _CellFailed(outcome.error)
        return outcome.summary[metric]

    def run_trial(trial: optuna.Trial) -> float:
        try:
            return train_cell(trial)
        except KeyboardInterrupt:
            trial.set_user_attr(A + "interrupted", True)  # the next run resumes it, no --retry-failed needed
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
        if search.budget() is None or ledger.budget_used(trials) < search.budget():
            return "train"
    return "wait" if "RUNNING" in states else "stop"


def work(sw: Sweep, *, device: str = "auto", data: tuple[Split, Split] | None = None,
         console: Console | None = None, worker: str | None = None) -> SweepReport:
    """Claim and train cells until none is left, waiting while other workers' cells may still fail over."""
    from sweeper.train import pick_device

    console = console or Console()
    torch_device = pick_device(device)
    before = snapshot(sw)
    if before.idle():
        console.print(f"[green]{sw.spec.name}: all {before.total} cells already done or closed; nothing to train.[/]")
        return ledger.report(sw.spec, before, before)
    cache = DataCache(data)
    cache.for_cell(sw.cells[0] if sw.cells else _probe(sw))  # a missing dataset fails before any run
    parent = tracking.sweep_run(sw.store, sw.exp_id, sw.spec, sw.profile, sw.path.read_text())
    console.print(f"{sw.spec.name}: {before.count('left')} cells to train on {torch_device} "
                  f"({before.count('done')} done) -> {sw.store.uri}, study {sw.name}")
    timeout = sw.spec.search.timeout if sw.spec.search else None
    deadline = time.monotonic() + timeout if timeout else None
    status, columns = "KILLED", [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("cells", total=before.count("left") if before.extra_left is not None else None)
            trial = _objective(sw, parent, torch_device, cache, progress, worker or f"{platform.node()}:{os.getpid()}")
            while (step := _next_step(sw, deadline)) != "stop":
                if step == "train":
                    sw.study.optimize(trial, n_trials=1, catch=(_CellFailed, _Skip))
                    progress.update(task, completed=before.count("left") - snapshot(sw).count("left"))
                else:
                    time.sleep(1.0)
        status = "FINISHED"
    finally:
        after = _close_parent(sw, parent, status)
    return ledger.report(sw.spec, before, after)


def _close_parent(sw: Sweep, parent: str, status: str) -> Snapshot:
    """End the sweep's MLflow run when this worker stops it (Ctrl-C) or nothing is left for anyone."""
    after = snapshot(sw)
    if status == "KILLED" or not after.pending():
        tracking.end_run(sw.store, parent, "FAILED" if status == "FINISHED" and after.count("failed") else status)
    return after


def _probe(sw: Sweep) -> Cell:
    """A search's cell at the low edge of every range: enough to load its data before sampling."""
    return trial_cell(sw.spec, sw.profile, {k: p.bounds()[0] for k, p in sw.spec.search.params.items()})


# --- entry points ---------------------------------------------------------------------------


def run(
    spec_path: str | Path,
    profile: str | None = None,
    *,
    tracking_uri: str | None = None,
    device: str = "auto",
    data: tuple[Split, Split] | None = None,
    console: Console | None = None,
    jobs: int = 1,
    devices: list[int] | None = None,
    storage: str | None = None,
    retry_failed: bool = False,
    heartbeat: int = HEARTBEAT,
) -> SweepReport:
    """Train the spec's unfinished cells: in this process, or in `jobs` worker processes (one per device)."""
    from sweeper.train import pick_device

    from sweeper import workers

    console = console or Console()
    pick_device(device)  # a device torch does not know is the user's error, before anything is written
    parallel = workers.assignments(jobs, devices, device) if jobs > 1 or devices else None
    if parallel and data is not None:
        raise ValueError("parallel workers load the prepared data set (SWEEPER_DATA_DIR); pass data only with jobs=1")
    sw = open_sweep(spec_path, profile, storage=storage, tracking_uri=tracking_uri, heartbeat=heartbeat,
                    check_data=data is None)
    plan(sw, retry_failed)
    if not parallel:
        return work(sw, device=device, data=data, console=console)
    before = snapshot(sw)
    if before.idle():
        console.print(f"[green]{sw.spec.name}: all {before.total} cells already done or closed; nothing to train.[/]")
        return ledger.report(sw.spec, before, before)
    parent = tracking.sweep_run(sw.store, sw.exp_id, sw.spec, sw.profile, sw.path.read_text())  # one, for all workers
    launch = workers.Launch(sw.path, profile, storage_url(storage, sw.store.uri), sw.store.uri, device, heartbeat,
                            local_dir(sw.store.uri) / "workers")
    status = "KILLED"
    try:
        workers.run_local(launch, parallel, poll=lambda: snapshot(sw), console=console)
        status = "FINISHED"
    finally:
        after = _close_parent(sw, parent, status)
    return ledger.report(sw.spec, before, after)


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
    """One worker of a sweep (of `sweeper run --jobs`, or one per machine against a shared storage)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    offset = index if index is not None else os.getpid()  # seeded samplers must differ between workers
    sw = open_sweep(spec_path, profile, storage=storage, tracking_uri=tracking_uri, heartbeat=heartbeat, seed_offset=offset,
                    check_data=True)
    plan(sw)
    name = f"{platform.node()}:{os.getpid()}" + (f" #{index}" if index is not None else "")
    return work(sw, device=device, console=console, worker=name)


def status(spec_path: str | Path, profile: str | None = None, *, storage: str | None = None,
           tracking_uri: str | None = None) -> Snapshot:
    """Cells done, running, failed, pruned and left, from the study and MLflow."""
    return snapshot(open_sweep(spec_path, profile, storage=storage, tracking_uri=tracking_uri))
