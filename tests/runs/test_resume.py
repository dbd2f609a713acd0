"""Never lose work: kill -9 a sweep mid-epoch, run the same command again, and it carries on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch
from conftest import TINY_SPEC
from mlflow import MlflowClient

from sweeper.runs import checkpoints

EPOCHS = 6  # of the row that is killed (after 2 logged epochs: 4 to spare); the other row trains 2
EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time", "images_per_s")


def sweeper_run(spec: Path, uri: str, cwd: Path, log: str) -> subprocess.Popen:
    """`sweeper run` as a user types it, with MLFLOW_TRACKING_URI set (heartbeat 1 s: a dead worker's cell is free in 3 s)."""
    cmd = [sys.executable, "-m", "sweeper", "run", str(spec), "--device", "cpu", "--heartbeat", "1"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SWEEPER_STORE_DIR": str(cwd / "mlruns"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=open(cwd / log, "w"), stderr=subprocess.STDOUT)


def wait_for_epochs(
    client: MlflowClient, exp_name: str, row: str, at_least: int, proc: subprocess.Popen, timeout: float = 120
):
    """The run of `row` once it has logged `at_least` epochs, and the steps it had then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "sweep ended before it could be killed"
        exp = client.get_experiment_by_name(exp_name)
        runs = client.search_runs([exp.experiment_id], f"tags.`sweeper.row` = '{row}'") if exp else []
        if runs:
            logged = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")]
            if len(logged) >= at_least:
                return runs[0], logged
        time.sleep(0.05)
    pytest.fail(f"{row} logged fewer than {at_least} epochs in {timeout} s")


def test_sigkill_mid_epoch_then_the_same_command_resumes(write_spec, data_dir, mlflow_server, tmp_path):
    data = {**TINY_SPEC["base"]["data"], "train_size": 160}
    rows = [{"label": "ReLU", "activation": "relu"}, {"label": "GELU", "activation": "gelu", "epochs": 2}]
    base = {**TINY_SPEC["base"], "data": data, "optimizer": {"name": "adam", "lr": 0.01}, "epochs": EPOCHS}
    spec = write_spec({**TINY_SPEC, "name": "killed", "rows": rows, "base": base})
    client = MlflowClient(mlflow_server)
    first = sweeper_run(spec, mlflow_server, tmp_path, "first.log")
    try:
        victim, seen = wait_for_epochs(client, "killed", "ReLU", at_least=2, proc=first)
        first.send_signal(signal.SIGKILL)  # mid-epoch: ReLU trains its third epoch (or later) right now
    finally:
        first.kill()
        first.wait()
    assert client.get_run(victim.info.run_id).info.status == "RUNNING", "a killed process ends nothing"

    second = sweeper_run(spec, mlflow_server, tmp_path, "second.log")
    assert second.wait(timeout=240) == 0, (tmp_path / "second.log").read_text()

    runs = client.search_runs([victim.info.experiment_id], "tags.`sweeper.role` = 'cell'")
    assert sorted(r.data.tags["sweeper.row"] for r in runs) == ["GELU", "ReLU"], "no cell trained twice"
    assert all(r.info.status == "FINISHED" for r in runs)
    relu = next(r for r in runs if r.data.tags["sweeper.row"] == "ReLU")
    assert relu.info.run_id == victim.info.run_id, "the killed cell resumed in its own MLflow run"
    assert relu.data.tags["sweeper.resumes"] == "1"
    assert int(relu.data.tags["sweeper.resumed_from_epoch"]) >= max(seen), "at most the running epoch was lost"
    for run in runs:
        epochs = EPOCHS if run is relu else 2
        for key in EPOCH_KEYS:
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), (run.data.tags["sweeper.row"], key)

    local = mlflow.artifacts.download_artifacts(
        run_id=relu.info.run_id,
        artifact_path="checkpoints/last.pt",
        dst_path=str(tmp_path / "ckpt"),
        tracking_uri=mlflow_server,
    )
    last = torch.load(local, weights_only=True)
    assert last["epoch"] == EPOCHS and len(last["history"]) == EPOCHS and last["cell"] == relu.data.tags["sweeper.cell"]
    assert "resuming run" in (tmp_path / "second.log").read_text()


def test_checkpoint_files_are_atomic_and_load_without_code(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    state = {
        "epoch": 3,
        "model": {"w": torch.ones(2, 2)},
        "generator": torch.Generator().get_state(),
        "history": [{"epoch": 1, "loss": 0.5}],
        "best": {"val_acc": 0.1, "epoch": 1},
        "scheduler": None,
    }
    checkpoints.save(state, path)
    frozen = checkpoints.snapshot(state)
    state["model"]["w"].add_(1)  # training goes on after the snapshot
    state["history"].append({"epoch": 2, "loss": 0.4})
    assert torch.equal(frozen["model"]["w"], torch.ones(2, 2)) and len(frozen["history"]) == 1
    loaded = checkpoints.load(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2, 2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"], "no temp file left beside it"

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        checkpoints.load(tmp_path / "evil.pt")


def test_serial_worker_keeps_order_and_reports_errors():
    worker = checkpoints.SerialWorker(max_pending=2)
    seen, gate = [], threading.Event()
    worker.submit(lambda: (gate.wait(5), seen.append(1)))
    worker.submit(lambda: seen.append(2))
    gate.set()
    worker.submit(lambda: seen.append(3))  # the third waits for the first: memory stays bounded
    worker.drain()
    assert seen == [1, 2, 3]
    worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        worker.close()


def test_sigterm_closes_the_cell_killed_and_the_next_run_resumes_it(write_spec, data_dir, tmp_path):
    base = {**TINY_SPEC["base"], "data": {**TINY_SPEC["base"]["data"], "train_size": 160}, "epochs": 4}
    spec = write_spec({**TINY_SPEC, "name": "stopped", "rows": TINY_SPEC["rows"][:1], "base": base})
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    client = MlflowClient(uri)
    first = sweeper_run(spec, uri, tmp_path, "first.log")
    try:
        victim, _ = wait_for_epochs(client, "stopped", "ReLU", at_least=1, proc=first)
        first.send_signal(signal.SIGTERM)  # what `kill`, a batch scheduler or `docker stop` send
        assert first.wait(timeout=60) == 130, (tmp_path / "first.log").read_text()
    finally:
        first.kill()
    assert client.get_run(victim.info.run_id).info.status == "KILLED", "SIGTERM closes the run, it is not left RUNNING"
    second = sweeper_run(spec, uri, tmp_path, "second.log")
    assert second.wait(timeout=240) == 0, (tmp_path / "second.log").read_text()
    (run,) = client.search_runs([victim.info.experiment_id], "tags.`sweeper.role` = 'cell'")
    assert run.info.run_id == victim.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["sweeper.resumes"] == "1"
