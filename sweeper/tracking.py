"""MLflow, and only here: experiments, the sweep's parent run, child runs, metrics, artifacts, models.

The life of one cell's run (create or resume, per-epoch checkpoints, how it ends) is in
`cellrun.py`, built from the calls here. Uses MlflowClient with explicit run ids rather than the
fluent API's global active run, so that several cells (threads, workers) can log at once
without stepping on each other.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import tempfile
import time
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
# Ending a run on a server would print two links into the progress display (and fetch the run).
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

from sweeper.runs_db import TAG  # noqa: E402, F401 - one tag prefix for writers and runs_db's reader


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


@functools.cache
def environment_tags() -> dict[str, str]:
    """Versions and hardware that explain a result: git commit (and whether it was dirty), torch, CUDA, host."""
    import torch

    tags = {
        TAG + "torch": torch.__version__,
        TAG + "cuda": str(torch.version.cuda),
        TAG + "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "None",
        TAG + "host": platform.node(),
    }
    # The commit of the code that trained, wherever the command was started from.
    repo = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5)
            tags[TAG + "git_dirty"] = str(bool(dirty.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


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
    run_id = store.client.create_run(exp_id, tags=tags, run_name=f"{cell.label} seed={cell.seed}").info.run_id
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


def log_model(store: Store, run_id: str, model: Any, example: Any) -> str:
    """A torch model as an MLflow model of the run (torch.export's pt2: loads without sweeper's code); its URI."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    mlflow.set_tracking_uri(store.uri)  # log_model resolves the store globally
    # Without a fluent active run MLflow would file the model under the Default experiment:
    # create it in the run's experiment and hand log_model its id and the run id.
    run = store.client.get_run(run_id)
    logged = store.client.create_logged_model(run.info.experiment_id, "model", run_id, params=run.data.params)
    # Explicit requirements skip MLflow's inference, which re-imports the model in a subprocess;
    # serving-input validation would reload the model just saved (a second per cell): the
    # signature comes from running this very model on the example.
    info = mlflow.pytorch.log_model(
        model, name="model", run_id=run_id, model_id=logged.model_id, signature=signature,
        input_example=example, serialization_format="pt2", validate_serving_input=False,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
    )
    set_tags(store, run_id, {TAG + "model_uri": info.model_uri})
    return info.model_uri


def cell_run(store: Store, exp_id: str, parent_id: str, cell: Cell, spec: Spec, profile: str | None,
             extra_tags: dict[str, str] | None = None) -> Any:
    """The context manager of a cell's run; it lives in cellrun.py, this is where callers look for it."""
    from sweeper import cellrun  # cellrun builds on this module

    return cellrun.cell_run(store, exp_id, parent_id, cell, spec, profile, extra_tags)


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


# --- analysis (issue 7): metric histories, artifacts by path ---------------------------------


def metric_history(store: Store, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of a run in step order; empty when it was never logged."""
    return sorted((m.step, m.value) for m in store.client.get_metric_history(run_id, key))


def download_artifact(store: Store, run_id: str, path: str, dst: Path) -> Path:
    """Download one artifact of a run into dst; a missing one is a UserError naming what the run has."""
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=store.uri)
    except (mlflow.exceptions.MlflowException, OSError):
        folder = path.rsplit("/", 1)[0] if "/" in path else None
        have = [a.path for a in store.client.list_artifacts(run_id, folder)]
        raise UserError(
            f"run {run_id} has no artifact '{path}' in {store.uri} (it has: {', '.join(have) or 'nothing there'})."
        ) from None
    return Path(local)


def log_files(store: Store, run_id: str, paths: list[Path], artifact_path: str) -> list[str]:
    """Log local files into one artifact folder of a run; returns their artifact paths."""
    for path in paths:
        store.client.log_artifact(run_id, str(path), artifact_path)
    return [f"{artifact_path}/{path.name}" for path in paths]
