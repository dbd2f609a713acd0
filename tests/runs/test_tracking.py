"""MLflow as the lab notebook, against a real `mlflow server`: what one cell leaves behind, and how it ends."""

from __future__ import annotations

import socket
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
from conftest import TINY_SPEC
from mlflow import MlflowClient
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from sweeper import sweep
from sweeper.cli import app
from sweeper.runs import cellrun, tracking
from sweeper.runs.server import is_loopback
from sweeper.schema.spec import expand, load_spec
from sweeper.sweep import runner
from sweeper.training.data import make_splits
from sweeper.training.train import build_model, train

# The tiny spec on fewer images: these tests are about what gets logged, not about learning.
SMALL = {
    **TINY_SPEC,
    "base": {
        **TINY_SPEC["base"],
        "data": {**TINY_SPEC["base"]["data"], "train_size": 160},
        "optimizer": {"name": "adam", "lr": 0.01},
    },
}
EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time", "images_per_s")
SUMMARY_KEYS = ("test_acc", "test_acc_best", "best_val_acc", "best_epoch", "params", "train_time")


def quiet() -> Console:
    return Console(quiet=True)


@pytest.fixture
def local_state(tmp_path, monkeypatch):
    """Keep the sweep's local files (its Optuna study) in the test's temp dir, not ./mlruns."""
    monkeypatch.setenv("SWEEPER_STORE_DIR", str(tmp_path / "local"))


def cell_runs(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(name)
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "cell"]


def artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for a in client.list_artifacts(run_id, path):
        out += artifact_files(client, run_id, a.path) if a.is_dir else [a.path]
    return out


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def download(uri: str, run_id: str, path: str, dst: Path) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=uri)
    )


def test_a_sweep_against_a_server_logs_everything_a_cell_leaves(
    write_spec, synthetic_data, mlflow_server, local_state, tmp_path, monkeypatch, chromium
):
    monkeypatch.setenv("SWEEPER_PNG", "0")  # the pictures are PNG even so: PIL draws them, no browser
    # an EMA, so that the evaluated weights (best.pt, the logged model) differ from the raw ones
    path = write_spec({**SMALL, "name": "served", "base": {**SMALL["base"], "ema_decay": 0.5}})
    report = sweep.run(path, tracking_uri=mlflow_server, device="cpu", data=synthetic_data, console=quiet())
    assert len(report.finished) == 2 and not report.failed

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("served")
    assert exp.artifact_location.startswith("mlflow-artifacts:"), "artifacts go through the server, not to a local path"
    runs = cell_runs(client, "served")
    cells = {c.id: c for c in expand(load_spec(path))}
    assert sorted(r.data.tags["sweeper.cell"] for r in runs) == sorted(cells)
    test = make_splits(*synthetic_data, val_size=50, train_size=160, test_size=100, seed=0).test
    for run in runs:
        run_id, tags, metrics = run.info.run_id, run.data.tags, run.data.metrics
        cell = cells[tags["sweeper.cell"]]
        assert run.info.status == "FINISHED"
        assert run.data.params["optimizer.lr"] == "0.01" and run.data.params["activation"] == cell.config.activation
        assert tags["sweeper.torch"] == torch.__version__ and "sweeper.cuda" in tags
        assert tags["sweeper.device"] == "cpu" and tags["sweeper.device_name"] and tags["sweeper.precision"]
        assert tags["sweeper.seed"] == "0" and tags["sweeper.profile"] == "default" and tags["sweeper.worker"]
        for key in EPOCH_KEYS:
            assert steps(client, run_id, key) == [1, 2], key
        assert all(key in metrics for key in SUMMARY_KEYS)

        files = artifact_files(client, run_id)
        for name in ("config.yaml", "checkpoints/best.pt", "checkpoints/last.pt"):
            assert name in files
        # pictures as PNG drawn without a browser; the curves are MLflow's own charts of the metrics
        assert sorted(f for f in files if f.startswith("plots/")) == ["plots/feature_maps.png", "plots/filters.png"]
        png = download(mlflow_server, run_id, "plots/filters.png", tmp_path / run_id)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        last = torch.load(download(mlflow_server, run_id, "checkpoints/last.pt", tmp_path / run_id), weights_only=True)
        assert last["epoch"] == 2 and last["cell"] == cell.id and [h["epoch"] for h in last["history"]] == [1, 2]
        assert {"model", "optimizer", "generator", "torch_rng", "best_state"} <= set(last)
        best = torch.load(download(mlflow_server, run_id, "checkpoints/best.pt", tmp_path / run_id), weights_only=True)
        assert best["epoch"] == metrics["best_epoch"] and best["cell"] == cell.id
        assert "optimizer" not in best and "torch_rng" not in best, (
            "best.pt holds weights to load, not a resumable state"
        )
        assert best["model"].keys() == last["best_state"].keys()
        assert all(torch.equal(best["model"][k], last["best_state"][k]) for k in best["model"]), (
            "the evaluated best weights"
        )
        assert not all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"]), (
            "the EMA's, not the raw ones"
        )

        # The logged model is the best checkpoint behind its normalisation, loaded with MLflow's own API.
        uri = tags["sweeper.model_uri"]
        logged = client.get_logged_model(uri.removeprefix("models:/"))
        assert logged.experiment_id == exp.experiment_id and logged.source_run_id == run_id
        loaded = mlflow.pytorch.load_model(uri)
        net = build_model(cell.config)
        net.load_state_dict(best["model"])
        reference = runner.PixelClassifier(net, cell.config.data.normalize).eval()
        pixels = test.images[:20].float()
        with torch.no_grad():
            assert torch.allclose(loaded(pixels), reference(pixels), atol=1e-4)
            accuracy = (loaded(test.images.float()).argmax(1) == test.labels).float().mean().item()
        assert accuracy > 0.3, "a trained classifier, well above chance"
        assert accuracy == pytest.approx(metrics["test_acc_best"], abs=0.05), "the best epoch's model (fp32 here)"


def _one_cell(write_spec, synthetic_data, name: str, epochs: int):
    spec = load_spec(
        write_spec({**SMALL, "name": name, "base": {**SMALL["base"], "epochs": epochs}}, name=f"{name}.yaml")
    )
    cell = expand(spec)[0]
    d = cell.config.data
    data = make_splits(*synthetic_data, val_size=d.val_size, train_size=d.train_size, test_size=d.test_size, seed=0)
    return spec, cell, data


class Judged:
    """A real trial whose report raises `stop` at epoch `at` (Ctrl-C), or whose pruner says stop."""

    def __init__(self, trial: optuna.Trial, at: int = 0, stop: BaseException | None = None, prune: bool = False):
        self.trial, self.at, self.stop, self.prune = trial, at, stop, prune

    def __getattr__(self, name: str):
        return getattr(self.trial, name)

    def report(self, value: float, step: int) -> None:
        if step == self.at and self.stop is not None:
            raise self.stop
        self.trial.report(value, step)

    def should_prune(self) -> bool:
        return self.prune


def _record(store, spec) -> cellrun.SweepRecord:
    exp_id = tracking.experiment_id(store, spec.name)
    return cellrun.SweepRecord(store, exp_id, tracking.sweep_run(store, exp_id, spec, None, "{}"), spec, None)


def test_ctrl_c_marks_the_run_killed_and_the_next_run_resumes_it_bit_exactly(write_spec, synthetic_data, mlflow_server):
    spec, cell, data = _one_cell(write_spec, synthetic_data, "resumed", epochs=2)
    store = tracking.open_store(mlflow_server)
    record, study = _record(store, spec), optuna.create_study(direction="maximize")
    cpu, progress = torch.device("cpu"), Progress(console=quiet())

    with pytest.raises(KeyboardInterrupt):
        runner.train_cell(record, cell, Judged(study.ask(), at=1, stop=KeyboardInterrupt()), data, cpu, progress)
    client = store.client
    [killed] = cell_runs(client, "resumed")
    assert killed.info.status == "KILLED" and killed.data.tags["sweeper.state"] == "interrupted"
    assert steps(client, killed.info.run_id, "train_loss") == [1], "the epoch before Ctrl-C is kept"

    value = runner.train_cell(record, cell, study.ask(), data, cpu, progress)
    [run] = cell_runs(client, "resumed")
    assert run.info.run_id == killed.info.run_id, "resumed in the same MLflow run"
    assert run.info.status == "FINISHED"
    assert run.data.tags["sweeper.resumes"] == "1" and run.data.tags["sweeper.resumed_from_epoch"] == "1"
    for key in EPOCH_KEYS:
        assert steps(client, run.info.run_id, key) == [1, 2], key
    # Through a checkpoint file on the server and back, training continued exactly as if never stopped.
    straight = train(cell.config, data, device="cpu").history
    logged = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
    assert logged == [h["train_loss"] for h in straight]
    assert run.data.metrics["best_val_acc"] == pytest.approx(value["best_val_acc"]), "the run's summary is returned"


def test_a_pruned_cell_is_killed_and_tagged_not_failed(write_spec, synthetic_data, mlflow_server):
    spec, cell, data = _one_cell(write_spec, synthetic_data, "pruned", epochs=2)
    store = tracking.open_store(mlflow_server)
    record, trial = _record(store, spec), optuna.create_study(direction="maximize").ask()
    with pytest.raises(optuna.TrialPruned):
        runner.train_cell(record, cell, Judged(trial, prune=True), data, torch.device("cpu"), Progress(console=quiet()))
    [run] = cell_runs(store.client, "pruned")
    assert run.info.status == "KILLED" and run.data.tags["sweeper.state"] == "pruned"
    assert "sweeper.error" not in run.data.tags
    assert cellrun.resumable_run(store, record.exp_id, cell.id) is None, "the pruner's verdict stands: not resumed"


def test_server_command_refuses_remote_binds_and_busy_ports(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPER_STORE_DIR", str(tmp_path / "mlruns"))
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    result = CliRunner().invoke(app, ["server", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--allow-remote" in result.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = CliRunner().invoke(app, ["server", "--port", str(busy.getsockname()[1])])
    assert result.exit_code == 2 and "--port" in result.output
    assert not (tmp_path / "mlruns").exists(), "nothing written for a refused start"


def test_figure_files_keep_dotted_names(tmp_path):
    import plotly.graph_objects as go

    from sweeper.plots import save_figure

    files = save_figure(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), tmp_path / "lr_1e-3.5", png=False)
    assert files == [tmp_path / "lr_1e-3.5.html"] and "plotly" in files[0].read_text()


def log_at_once(store, run_id: str, digest: str, start, errors: list) -> None:
    """Log a dataset input once every thread is at the barrier; collect the error, if any."""
    start.wait()
    try:
        tracking.log_dataset(store, run_id, "synthetic", digest, "synthetic", {"train": 1})
    except Exception as exc:  # noqa: BLE001 - collected and asserted by the caller
        errors.append(exc)


def test_workers_logging_the_same_new_dataset_at_once_both_get_it(mlflow_server):
    """Two workers' first cells log one dataset at the same moment: the store's unique key (name, digest)
    lets one insert win; the other must link the existing row, not fail its cell (seen under SLURM)."""
    import threading

    store = tracking.open_store(mlflow_server)
    exp = store.client.create_experiment("race")
    for digest in (f"{i:016x}" for i in range(8)):
        runs = [store.client.create_run(exp).info.run_id for _ in range(2)]
        start, errors = threading.Barrier(2), []

        threads = [threading.Thread(target=log_at_once, args=(store, r, digest, start, errors)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for run_id in runs:
            (given,) = store.client.get_run(run_id).inputs.dataset_inputs
            assert given.dataset.digest == digest
