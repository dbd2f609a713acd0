"""The Optuna side of a sweep: its storage (sqlite beside MLflow, or PostgreSQL), the study's name,
sampler and pruner, and `open_sweep`, which ties a spec to its MLflow experiment and its study.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import event
from sqlalchemy.exc import ArgumentError, OperationalError

from sweeper.errors import UserError
from sweeper.locks import locked
from sweeper.runs import owner, tracking
from sweeper.schema.spec import Cell, Spec, expand, load_spec
from sweeper.secrets import mask_uri
from sweeper.settings import CONNECT_TIMEOUT, get_settings
from sweeper.training.data import cached_source

HEARTBEAT = 10  # seconds between a worker's heartbeats; silent for 3x this, its cell is handed on
MAX_RETRY = 2  # times a cell whose worker died is handed to another worker


def local_dir(tracking_uri: str) -> Path:
    """Where local sweep state lives: beside a sqlite MLflow store, else the store dir (mlruns/)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent
    return get_settings().store_dir


def storage_url(storage: str | None, tracking_uri: str) -> str:
    """The study's storage: as given, else $SWEEPER_STORAGE (postgresql:// gets the psycopg 3 driver), else
    sqlite beside MLflow."""
    storage = storage or get_settings().storage
    if not storage:
        folder = local_dir(tracking_uri)
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(folder / 'optuna.db').resolve()}"
    if storage.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + storage.split("://", 1)[1]
    return storage


def _serialize_sqlite(engine: Any) -> None:
    """Take sqlite's write lock at BEGIN, so that two processes cannot both claim one waiting trial."""

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the begin hook below issue BEGIN

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections predate the hooks


def open_storage(url: str, heartbeat: int = HEARTBEAT) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats: a trial silent for 3 heartbeats is failed and retried."""
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}} if sqlite else {"pool_pre_ping": True}
    if url.startswith("postgresql"):  # a down server fails in seconds, not after the OS's TCP timeout
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    # A new sqlite file's tables are created by one process at a time (a lock on its folder); other
    # databases race, and the loser retries.
    folder = Path(url.split(":///", 1)[1]).parent if url.startswith("sqlite:///") else None
    for attempt in range(3):
        try:
            with locked(folder) if folder and folder.is_dir() else contextlib.nullcontext():
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=3 * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRY
                    ),
                )
            break
        except Exception as exc:  # noqa: BLE001 - bad URL, missing driver, unreachable server: all the user's to fix
            unreachable = isinstance(exc, OperationalError) and "connection" in str(exc).lower()
            if attempt < 2 and not unreachable and not isinstance(exc, (ImportError, ValueError, ArgumentError)):
                time.sleep(1 + attempt)
                continue
            first = mask_uri(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
            raise UserError(
                f"cannot open the sweep storage {mask_uri(url)} ({type(exc).__name__}: {first[:300]}). Use "
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
    blob = json.dumps(
        [spec.base, spec.profiles.get(profile or "", {}), spec.seeds, spec.search.model_dump(mode="json")],
        sort_keys=True,
        default=str,
    )
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


def open_sweep(
    spec_path: str | Path,
    profile: str | None = None,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    heartbeat: int = HEARTBEAT,
    seed_offset: int = 0,
    check_data: bool = False,
) -> Sweep:
    """Validate the spec (and that the dataset is prepared), then connect MLflow and the study (created on first use)."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    cells = expand(spec, profile)
    if check_data:  # a missing dataset fails before any store, study or run is created
        cached_source(get_settings().data_dir)
    uri = get_settings().resolved_tracking_uri(tracking_uri)
    tracking.check_store(uri)  # a bad or unreachable store, then a bad storage, fail before either is written
    rdb = open_storage(storage_url(storage, uri), heartbeat)
    store = tracking.open_store(uri)
    exp_id = tracking.experiment_id(store, spec.name)
    assert exp_id is not None  # created when missing
    owner.claim(store, exp_id, spec.name, spec_path)  # another spec of this name: refused before its study opens
    search = spec.search
    # numpy's RandomState under the samplers takes seeds below 2**32; a worker's offset may be its pid
    seed = None if search is None or search.seed is None else (search.seed + seed_offset) % 2**32
    directions: list[Any] = [o.direction for o in search.objectives()] if search else ["maximize"]
    study = optuna.create_study(
        storage=rdb,
        study_name=study_name(spec, profile),
        directions=directions,
        sampler=_sampler(spec, seed),
        pruner=_pruner(spec),
        load_if_exists=True,
    )
    return Sweep(spec, spec_path, profile, store, exp_id, study, cells)


# catalogue.SAMPLERS and catalogue.PRUNERS, built from the spec's search block (tests/test_catalogue.py
# holds these keys to the catalogue).
SAMPLERS: dict[str, Callable[[Any, int | None], optuna.samplers.BaseSampler]] = {
    "random": lambda s, seed: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda s, seed: optuna.samplers.GridSampler(s.grid_space(), seed=seed),
    "cmaes": lambda s, seed: optuna.samplers.CmaEsSampler(seed=seed),
    # the liar keeps parallel workers apart
    "tpe": lambda s, seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
}
PRUNERS: dict[str, Callable[[Any], optuna.pruners.BasePruner]] = {
    "none": lambda p: optuna.pruners.NopPruner(),
    "median": lambda p: optuna.pruners.MedianPruner(
        n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
    ),
    "successive_halving": lambda p: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=p.min_resource, reduction_factor=p.reduction_factor
    ),
    "hyperband": lambda p: optuna.pruners.HyperbandPruner(
        min_resource=p.min_resource, reduction_factor=p.reduction_factor
    ),
}


def _sampler(spec: Spec, seed: int | None) -> optuna.samplers.BaseSampler:
    """Rows and grids are enqueued fixed trials: a random sampler never gets asked; a search's own sampler."""
    s = spec.search
    return SAMPLERS[s.sampler if s is not None else "random"](s, seed)


def _pruner(spec: Spec) -> optuna.pruners.BasePruner:
    p = spec.search.pruner if spec.search else None
    return PRUNERS[p.name if p is not None else "none"](p)
