"""Faults of the store, not of a cell: a read-only store is refused before any training, and a full disk
stops the sweep with one paragraph (exit 2) and leaves the cell to resume; the same command then finishes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.runs import checkpoints


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.fixture
def read_only_store(tmp_path: Path):
    """An existing MLflow store, then made read-only: a read-only bind mount as root, mode bits otherwise."""
    store = tmp_path / "mlruns"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("earlier")
    if os.geteuid() != 0:
        (store / "mlflow.db").chmod(0o444)
        store.chmod(0o555)
        yield uri
        store.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(store), str(store)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {mounted.stderr.strip()}")
    try:
        yield uri
    finally:
        subprocess.run(["umount", str(store)], check=True)


def test_a_read_only_store_is_refused_before_any_training(write_spec, data_dir, read_only_store, tmp_path):
    store = tmp_path / "mlruns"
    before = listing(store)
    result = invoke("run", str(write_spec()), "--tracking-uri", read_only_store, "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "read-only" in result.output and str(store) in result.output and "Traceback" not in result.output
    assert listing(store) == before, "nothing written"


def test_a_full_disk_stops_the_sweep_cleanly_and_the_same_command_finishes_it(
    write_spec, data_dir, store_uri, monkeypatch
):
    spec = write_spec()
    real_save, calls = checkpoints.save, []

    def save_until_full(state, path):
        calls.append(path)
        if Path(path).parent.name == "2" and len(calls) <= 3:  # the first cell's epoch 2 (epoch 1 is stored)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(state, path)

    monkeypatch.setattr(checkpoints, "save", save_until_full)
    args = ("run", str(spec), "--tracking-uri", store_uri, "--device", "cpu")
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "is full (" in result.output and "MB free" in result.output, result.output
    assert "run the same command again" in result.output and "Traceback" not in result.output
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    [stopped] = client.search_runs([exp.experiment_id], "tags.`sweeper.role` = 'cell'")
    assert stopped.info.status == "KILLED" and "sweeper.error" not in stopped.data.tags

    monkeypatch.setattr(checkpoints, "save", real_save)  # space freed
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    runs = client.search_runs([exp.experiment_id], "tags.`sweeper.role` = 'cell'")
    assert sorted(r.data.tags["sweeper.row"] for r in runs) == ["GELU", "ReLU"]
    assert all(r.info.status == "FINISHED" for r in runs)
    resumed = next(r for r in runs if r.info.run_id == stopped.info.run_id)
    assert resumed.data.tags["sweeper.resumed_from_epoch"] == "1"


RACER = """
import sys, time
from pathlib import Path
from sweeper.sweep import open_sweep
Path(sys.argv[4]).touch()  # imported (MLflow, Optuna, torch): ready
go = Path(sys.argv[2])
while not go.exists():  # start creating the store together with the other process
    time.sleep(0.01)
open_sweep(sys.argv[1], tracking_uri=sys.argv[3])
"""


def test_two_first_runs_at_once_create_one_store_and_one_study(write_spec, tmp_path):
    spec, go, store = write_spec(), tmp_path / "go", tmp_path / "mlruns"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {**os.environ, "SWEEPER_STORE_DIR": str(store)}
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(spec), str(go), uri, str(r)], env=env, stderr=subprocess.PIPE, text=True
        )
        for r in ready
    ]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in racers), [p.communicate()[1] for p in racers if p.poll() is not None]
        time.sleep(0.05)
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in racers]
    assert [p.returncode for p in racers] == [0, 0], errors
    client = MlflowClient(uri)
    assert [e.name for e in client.search_experiments()].count("tiny") == 1
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{store / 'optuna.db'}")] == [
        "tiny/default"
    ]
