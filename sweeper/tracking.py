"""MLflow, and only here: experiments, the sweep's parent run, one child run per cell.

Uses MlflowClient with explicit run ids rather than the fluent API's global active run, so that
several cells (threads, workers) can log at once without stepping on each other.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweeper.config import flatten
from sweeper.errors import UserError
from sweeper.settings import get_settings
from sweeper.spec import Cell, Spec

# Keep the CLI snappy against a dead server: MLflow's default retries take minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
# A table read fetches one small artifact; a progress bar there is noise in piped output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

TAG = "sweeper."


@dataclass
class Store:
    """A tracking store: the URI, a client bound to it, and where local artifacts go."""

    uri: str
    client: MlflowClient
    artifact_root: Path | None


def open_store(uri: str | None = None) -> Store:
    """Connect to the store (default: sqlite under mlruns/); an unreachable server is a UserError."""
    settings = get_settings()
    uri = settings.resolved_tracking_uri(uri)
    artifact_root = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        artifact_root = settings.artifact_root() if db.parent.resolve() == settings.store_dir.resolve() else db.parent / "artifacts"
    elif uri.startswith(("http://", "https://")):
        _check_server(uri)
    mlflow.set_tracking_uri(uri)
    return Store(uri=uri, client=MlflowClient(tracking_uri=uri), artifact_root=artifact_root)


def _check_server(uri: str) -> None:
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise UserError(
            f"cannot reach the MLflow server at {uri} ({type(exc).__name__}). Start one with "
            "`sweeper server`, or unset MLFLOW_TRACKING_URI / drop --tracking-uri to use the local store."
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
    return store.client.create_experiment(name, artifact_location=location)


def finished_cells(store: Store, exp_id: str) -> dict[str, Any]:
    """cell id -> its newest FINISHED child run, in one query for the whole experiment."""
    runs = search(store, exp_id, f"tags.`{TAG}role` = 'cell' and attributes.status = 'FINISHED'")
    done: dict[str, Any] = {}
    for run in runs:
        done.setdefault(run.data.tags[TAG + "cell"], run)
    return done


def search(store: Store, exp_id: str, filter_string: str) -> list[Any]:
    """All runs matching a filter, newest first, across pages."""
    runs, token = [], None
    while True:
        page = store.client.search_runs(
            [exp_id], filter_string, max_results=1000, order_by=["attributes.start_time DESC"], page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sweep_run(store: Store, exp_id: str, spec: Spec, profile: str | None, spec_text: str) -> str:
    """The parent run of (spec, profile): reused across invocations so resumed cells stay together."""
    profile_tag = profile or "default"
    found = search(store, exp_id, f"tags.`{TAG}role` = 'sweep' and tags.`{TAG}profile` = '{profile_tag}'")
    if found:
        run_id = found[0].info.run_id
        store.client.update_run(run_id, status="RUNNING")
    else:
        tags = {TAG + "role": "sweep", TAG + "spec": spec.name, TAG + "profile": profile_tag, **environment_tags()}
        run_id = store.client.create_run(exp_id, tags=tags, run_name=f"{spec.name} [{profile_tag}]").info.run_id
    store.client.log_text(run_id, spec_text, "spec.yaml")
    store.client.set_tag(run_id, TAG + "table", spec.table.model_dump_json())
    return run_id


def end_run(store: Store, run_id: str, status: str = "FINISHED") -> None:
    """Mark a run FINISHED, FAILED or KILLED."""
    store.client.set_terminated(run_id, status=status)


def environment_tags() -> dict[str, str]:
    """Versions and hardware that explain a result: git commit, torch, CUDA, host."""
    import torch

    tags = {
        TAG + "torch": torch.__version__,
        TAG + "cuda": str(torch.version.cuda),
        TAG + "host": platform.node(),
    }
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


class CellLogger:
    """Logs one cell's epochs and summary to its child run, one batched request at a time."""

    def __init__(self, store: Store, run_id: str):
        self.store, self.run_id = store, run_id

    def log_epoch(self, metrics: dict[str, float]) -> None:
        """All metrics of an epoch in one request, step = epoch."""
        step, now = int(metrics["epoch"]), int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch" and v == v]
        self.store.client.log_batch(self.run_id, metrics=batch)

    def log_summary(self, summary: dict[str, float]) -> None:
        """Final metrics (test accuracy, best epoch, parameter count)."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in summary.items() if v == v]
        self.store.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Extra tags known only once training started (device, resolved precision)."""
        self.store.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


@contextmanager
def cell_run(store: Store, exp_id: str, parent_id: str, cell: Cell, spec: Spec, profile: str | None) -> Iterator[CellLogger]:
    """A child run for one cell: params, tags and config up front; FINISHED, FAILED or KILLED at the end."""
    config = cell.config.model_dump(mode="json")
    tags = {
        "mlflow.parentRunId": parent_id,
        TAG + "role": "cell",
        TAG + "spec": spec.name,
        TAG + "row": cell.label,
        TAG + "row_index": str(cell.row),
        TAG + "seed": str(cell.seed),
        TAG + "profile": profile or "default",
        TAG + "cell": cell.id,
        **environment_tags(),
    }
    run = store.client.create_run(exp_id, tags=tags, run_name=f"{cell.label} seed={cell.seed}")
    run_id = run.info.run_id
    params = [Param(k, str(v)) for k, v in {"label": cell.label, **flatten(config)}.items()]
    store.client.log_batch(run_id, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        store.client.log_artifact(run_id, str(path))
    try:
        yield CellLogger(store, run_id)
    except KeyboardInterrupt:
        end_run(store, run_id, "KILLED")
        raise
    except Exception as exc:
        store.client.set_tag(run_id, TAG + "error", f"{type(exc).__name__}: {exc}"[:5000])
        end_run(store, run_id, "FAILED")
        raise
    end_run(store, run_id, "FINISHED")


def cell_runs(store: Store, exp_id: str) -> list[Any]:
    """Every child run of an experiment, newest first (tables read these)."""
    return search(store, exp_id, f"tags.`{TAG}role` = 'cell'")


def sweep_runs(store: Store, exp_id: str) -> list[Any]:
    """Every parent run of an experiment, newest first."""
    return search(store, exp_id, f"tags.`{TAG}role` = 'sweep'")


def read_text_artifact(store: Store, run_id: str, path: str) -> str:
    """The text of one artifact of a run."""
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=store.uri)
        return Path(local).read_text()
