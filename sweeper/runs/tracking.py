"""MLflow, and only here: experiments, the sweep's parent run, child runs, metrics, artifacts, models.

The life of one cell's run (create or resume, per-epoch checkpoints, how it ends) is in
`cellrun.py`, built from the calls here. Uses MlflowClient with explicit run ids rather than the
fluent API's global active run, so that several cells (threads, workers) can log at once
without stepping on each other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
import yaml

from sweeper.errors import UserError
from sweeper.locks import locked
from sweeper.runs import cells, faults
from sweeper.schema.dotted import flatten
from sweeper.schema.spec import Cell, Spec
from sweeper.secrets import mask_uri
from sweeper.settings import CONNECT_TIMEOUT, get_settings
from sweeper.vocab import Tag, profile_tag

# Keep the CLI snappy against a dead server: MLflow's default retries take minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
# A table read fetches one small artifact; a progress bar there is noise in piped output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Ending a run on a server would print two links into the progress display (and fetch the run).
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag  # noqa: E402

# A new store's first use creates MLflow's tables and says so at INFO: set-up noise, not the sweep's news.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


@dataclass
class Store:
    """A tracking store: the URI, a client bound to it, and where local artifacts go."""

    uri: str
    client: MlflowClient
    artifact_root: Path | None


def open_store(uri: str | None = None, *, create: bool = True) -> Store:
    """Connect to the store (default: sqlite under mlruns/); a bad URI or an unreachable server is a UserError.

    With create=False (reads), a missing local store is a UserError instead of a new empty one.
    """
    settings = get_settings()
    uri = settings.resolved_tracking_uri(uri)
    check_store(uri, create=create)
    artifact_root, folder = None, None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        folder = db.parent
        artifact_root = (
            settings.artifact_root() if db.parent.resolve() == settings.store_dir.resolve() else db.parent / "artifacts"
        )
    try:
        # The client creates and migrates a new sqlite store; two processes doing that at once break it
        # ("duplicate column", "table already exists"): one at a time, the second finds it made.
        with locked(folder) if folder else contextlib.nullcontext():
            client = MlflowClient(tracking_uri=uri)
    except (mlflow.exceptions.MlflowException, ImportError, sa.exc.SQLAlchemyError) as exc:
        raise UserError(
            f"cannot open the MLflow store {mask_uri(uri)} ({_first_line(exc)}). Use sqlite:///PATH, "
            "postgresql://USER:PASSWORD@HOST/DB or http://HOST:PORT of a `sweeper server`, or drop "
            "--tracking-uri / unset MLFLOW_TRACKING_URI for the local store."
        ) from None
    mlflow.set_tracking_uri(uri)
    return Store(uri=uri, client=client, artifact_root=artifact_root)


# The schemes MLflow's tracking store registry knows (MLflow 3.x, without plugins); "" is a local path.
_SCHEMES = frozenset({"", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "uc"})


def check_store(uri: str, *, create: bool = True) -> None:
    """What can be checked of a tracking URI without writing anything: the server answers, the file exists."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme.split("+")[0] not in _SCHEMES:
        raise UserError(
            f"the tracking URI {mask_uri(uri)} has the scheme '{scheme}', which MLflow does not store runs in. Use "
            "sqlite:///PATH, postgresql://USER:PASSWORD@HOST/DB or http://HOST:PORT of a `sweeper server`, or drop "
            "--tracking-uri / unset MLFLOW_TRACKING_URI for the local store."
        )
    if scheme == "sqlite" and create:
        faults.check_writable(Path(uri.removeprefix("sqlite:///")))  # before a sweep writes or trains anything
    if scheme == "sqlite" and not create:
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise UserError(
                f"no MLflow store at {db}: nothing has run there yet. Run `sweeper run experiments/NAME.yaml` "
                "first, or point --tracking-uri / MLFLOW_TRACKING_URI at the store that holds the runs."
            )
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif scheme == "postgresql" or scheme.startswith("postgresql+"):
        _check_database(uri)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return mask_uri(f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}")


def _check_server(uri: str) -> None:
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise UserError(
            f"cannot reach the MLflow server at {mask_uri(uri)} ({type(exc).__name__}). Start one with "
            "`sweeper server`, or unset MLFLOW_TRACKING_URI / drop --tracking-uri to use the local store."
        ) from None


def _check_database(uri: str) -> None:
    """Connect once with a short timeout: MLflow's own engine retries a down server for about two minutes."""
    try:
        url = sa.engine.make_url(uri)
        if url.drivername == "postgresql":  # MLflow's default driver may be missing; any reaches the server
            url = url.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT}, poolclass=sa.pool.NullPool)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        raise UserError(
            f"cannot connect to the MLflow database {mask_uri(uri)} within {CONNECT_TIMEOUT} s ({_first_line(exc)}). "
            "Check that the server is up and the URI's host, port, user and password, or drop --tracking-uri / "
            "unset MLFLOW_TRACKING_URI for the local store."
        ) from None


def experiment_id(store: Store, name: str, create: bool = True) -> str | None:
    """The id of the experiment named after the spec, created on first use."""
    exp = store.client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            store.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    if not create:
        return None
    location = (store.artifact_root / name).as_uri() if store.artifact_root else None
    try:
        return store.client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another process created it just now (two first runs at once)
        exp = store.client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def finished_cells(store: Store, exp_id: str) -> dict[str, Any]:
    """cell id -> the FINISHED run standing for it (cells.finished), of any profile, in one query for the experiment."""
    return cells.finished(search(store, exp_id, f"tags.`{Tag.ROLE}` = 'cell' and attributes.status = 'FINISHED'"))


def search(store: Store, exp_id: str, filter_string: str) -> list[Any]:
    """All runs matching a filter, newest first, across pages."""
    runs: list[Any] = []
    token = None
    while True:
        page = store.client.search_runs(
            [exp_id], filter_string, max_results=1000, order_by=["attributes.start_time DESC"], page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sweep_run(
    store: Store, exp_id: str, spec: Spec, profile: str | None, spec_text: str, tags: dict[str, str] | None = None
) -> str:
    """The parent run of (spec, profile), reused across invocations so resumed cells stay together; `tags` go on a new one."""
    tag = profile_tag(profile)
    found = search(store, exp_id, f"tags.`{Tag.ROLE}` = 'sweep' and tags.`{Tag.PROFILE}` = '{tag}'")
    if found:
        run_id = found[0].info.run_id
        store.client.update_run(run_id, status="RUNNING")
    else:
        tags = {Tag.ROLE: "sweep", Tag.SPEC: spec.name, Tag.PROFILE: tag, **(tags or {})}
        run_id = store.client.create_run(exp_id, tags=tags, run_name=f"{spec.name} [{tag}]").info.run_id
    store.client.log_text(run_id, spec_text, "spec.yaml")
    store.client.set_tag(run_id, Tag.TABLE, spec.table.model_dump_json())
    return run_id


def end_run(store: Store, run_id: str, status: str = "FINISHED") -> None:
    """Mark a run FINISHED, FAILED or KILLED."""
    store.client.set_terminated(run_id, status=status)


def epoch_metrics(metrics: dict[str, float], step: int) -> list[Metric]:
    """MLflow metrics of one step from a dict (its 'epoch' key and NaNs left out)."""
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch" and v == v]


def log_metrics(store: Store, run_id: str, metrics: dict[str, float], step: int) -> None:
    """All metrics of one step in one request."""
    store.client.log_batch(run_id, metrics=epoch_metrics(metrics, step))


def log_batch(store: Store, run_id: str, metrics: list[Metric]) -> None:
    """Prepared metrics (epoch_metrics) in as few requests as MLflow allows (1,000 a request)."""
    store.client.log_batch(run_id, metrics=metrics)


def log_steps(store: Store, run_id: str, history: list[dict[str, float]]) -> None:
    """Several epochs' metrics (dicts with an 'epoch' key) in one request."""
    store.client.log_batch(run_id, metrics=[m for h in history for m in epoch_metrics(h, int(h["epoch"]))])


def set_tags(store: Store, run_id: str, tags: dict[str, Any]) -> None:
    """Several tags in one request."""
    store.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_dataset(
    store: Store, run_id: str, name: str, digest: str, source: str, sizes: dict[str, int], context: str = "training"
) -> None:
    """The run's data as an MLflow dataset input (the UI's Dataset column), split sizes as its profile.

    MLflow keeps one input per (name, digest) on a run, so logging again on resume adds nothing. Two
    workers that log the same new dataset at once race on the store's unique key (name, digest per
    experiment): the loser gets an IntegrityError, and its retry finds the row and just links it.
    """
    dataset = Dataset(name, digest, "local", json.dumps({"description": source}), profile=json.dumps(sizes))
    inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
    for attempt in range(DATASET_ATTEMPTS):
        try:
            store.client.log_inputs(run_id, inputs)
            return
        except Exception as exc:  # noqa: BLE001 - MLflow wraps the database's error in its own types
            if not _unique_race(exc) or attempt == DATASET_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


DATASET_ATTEMPTS = 5


def _unique_race(exc: Exception) -> bool:
    """A unique-key violation from sqlite ('UNIQUE constraint failed') or PostgreSQL ('duplicate key')."""
    text = str(exc)
    return "UNIQUE constraint failed" in text or "duplicate key value" in text or "IntegrityError" in text


def log_text(store: Store, run_id: str, text: str, path: str) -> None:
    """A text artifact (e.g. the sweep's rendered table.md), replacing one at the same path."""
    store.client.log_text(run_id, text, path)


def logged_steps(store: Store, run_id: str, key: str) -> set[int]:
    """The steps at which a run has logged a metric."""
    return {m.step for m in store.client.get_metric_history(run_id, key)}


def mark_running(store: Store, run_id: str) -> dict[str, str]:
    """Set an interrupted run RUNNING again; returns its tags."""
    store.client.update_run(run_id, status="RUNNING")
    return store.client.get_run(run_id).data.tags


def create_cell_run(store: Store, exp_id: str, cell: Cell, tags: dict[str, str]) -> str:
    """A new child run for a cell: tags, dotted params and the resolved config.yaml; returns its id."""
    config = cell.config.model_dump(mode="json")
    run_id = store.client.create_run(exp_id, tags=tags, run_name=cell.name).info.run_id
    params = [Param(k, str(v)) for k, v in {"label": cell.label, **flatten(config)}.items()]
    store.client.log_batch(run_id, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        store.client.log_artifact(run_id, str(path))
    return run_id


def has_artifact(store: Store, run_id: str, path: str) -> bool:
    """Whether a run has the artifact file `path`."""
    folder = path.rsplit("/", 1)[0] if "/" in path else None
    return path in [a.path for a in store.client.list_artifacts(run_id, folder)]


def cell_runs(store: Store, exp_id: str) -> list[Any]:
    """Every child run of an experiment, newest first (tables read these)."""
    return search(store, exp_id, f"tags.`{Tag.ROLE}` = 'cell'")


def sweep_runs(store: Store, exp_id: str) -> list[Any]:
    """Every parent run of an experiment, newest first."""
    return search(store, exp_id, f"tags.`{Tag.ROLE}` = 'sweep'")


def read_text_artifact(store: Store, run_id: str, path: str) -> str:
    """The text of one artifact of a run."""
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=store.uri
        )
        return Path(local).read_text()


class MlflowRuns:
    """The table's reads through MlflowClient: any store (servers, other databases, other schemas)."""

    def __init__(self, store: Store) -> None:
        self.store, self.uri = store, store.uri

    def experiment_id(self, name: str) -> str | None:
        """The experiment's id, None when there is none."""
        return experiment_id(self.store, name, create=False)

    def experiment_names(self) -> list[str]:
        """Names of the active experiments."""
        return [e.name for e in self.store.client.search_experiments()]

    def search(self, exp_id: str, role: str, profile: str | None = None) -> list[Any]:
        """Runs tagged with this role (and profile), newest first."""
        where = f"tags.`{Tag.ROLE}` = '{role}'" + (
            f" and tags.`{Tag.PROFILE}` = '{profile}'" if profile is not None else ""
        )
        return search(self.store, exp_id, where)

    def text_artifact(self, run: Any, path: str) -> str:
        """The text of one artifact of a run."""
        return read_text_artifact(self.store, run.info.run_id, path)


# --- analysis (issue 7): metric histories, artifacts by path ---------------------------------


def metric_history(store: Store, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of a run in step order; empty when it was never logged."""
    return sorted((m.step, m.value) for m in store.client.get_metric_history(run_id, key))


def download_artifact(store: Store, run_id: str, path: str, dst: Path) -> Path:
    """Download one artifact of a run into dst; a missing one is a UserError naming what the run has."""
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=store.uri
        )
    except (mlflow.exceptions.MlflowException, OSError):
        folder = path.rsplit("/", 1)[0] if "/" in path else None
        have = [a.path for a in store.client.list_artifacts(run_id, folder)]
        raise UserError(
            f"run {run_id} has no artifact '{path}' in {mask_uri(store.uri)} (it has: {', '.join(have) or 'nothing there'})."
        ) from None
    return Path(local)


def log_files(store: Store, run_id: str, paths: list[Path], artifact_path: str) -> list[str]:
    """Log local files into one artifact folder of a run; returns their artifact paths."""
    for path in paths:
        store.client.log_artifact(run_id, str(path), artifact_path)
    return [f"{artifact_path}/{path.name}" for path in paths]
