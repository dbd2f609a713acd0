"""A sweep dispatched to a real single-node SLURM (.ci/slurm-up) as a job array, against a real
PostgreSQL and a real `sweeper server`; one array task is signalled mid-cell and requeued."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import need
from helpers import grid_spec, running_trial_past
from mlflow import MlflowClient

from sweeper.schema.spec import expand, load_spec

pytestmark = pytest.mark.server  # a real SLURM and its job subprocesses

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slurm() -> None:
    """Start (or find running) the single-node SLURM: skipped where SLURM is not installed, a failure under CI.

    Under CI, .ci/slurm-up installs slurm-wlm and munge first; elsewhere nothing is installed behind
    the user's back.
    """
    installed = shutil.which("slurmctld") and shutil.which("munged")
    need(installed or os.environ.get("CI"), "SLURM not installed (apt-get install slurm-wlm munge)")
    need(os.geteuid() == 0, "starting SLURM needs root (.ci/slurm-up)")
    out = subprocess.run([ROOT / ".ci" / "slurm-up"], capture_output=True, text=True, timeout=600)
    last = (out.stderr.strip() or out.stdout.strip() or "no output").splitlines()[-1]
    need(out.returncode == 0, f".ci/slurm-up failed (exit {out.returncode}): {last}")


def sweeper(*args: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def squeue(array: str) -> str:
    return subprocess.run(
        ["squeue", "--states=all", "--array", "-j", array, "-o", "%.10i %.9P %.20j %.10T %.8M %R"],
        capture_output=True,
        text=True,
    ).stdout


def test_refuses_stores_other_nodes_cannot_reach(write_spec, tmp_path):
    env = {**os.environ, "SWEEPER_STORE_DIR": str(tmp_path / "mlruns"), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = sweeper("run", str(write_spec()), "--launcher", "slurm", env=env)
    assert out.returncode == 2 and "every node can reach" in out.stderr and "sqlite" in out.stderr, out.stderr
    out = sweeper("run", str(write_spec()), "--launcher", "slurm", "--storage", "postgresql://u@db/x", env=env)
    assert out.returncode == 2 and "MLflow server every node can reach" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_array_of_two_workers_with_one_requeued_mid_cell(slurm, write_spec, data_dir, mlflow_server, tmp_path, request):
    t0 = time.monotonic()
    pg_url = request.getfixturevalue("postgres_url")
    path = write_spec(grid_spec(epochs=6, activation=["relu", "gelu"], **{"optimizer.lr": [1e-3, 3e-3]}))
    env = {**os.environ, "SWEEPER_STORE_DIR": str(tmp_path / "mlruns"), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    where = ["--storage", pg_url, "--tracking-uri", mlflow_server]
    out = sweeper(
        *["run", str(path), "--launcher", "slurm", "--workers", "2", "--opt", "time=10", "--opt", "requeue=true"],
        *[*where, "--device", "cpu", "--heartbeat", "2"],
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    ids = re.findall(r"\b(\d+_\d)\b", out.stdout)
    assert len(ids) == 2, out.stdout
    array = ids[0].split("_")[0]
    storage = optuna.storages.RDBStorage("postgresql+psycopg://" + pg_url.split("://", 1)[1])  # one pool

    # a trial past its first epoch: its task is told it is preempted (USR2, as at a time limit)
    victim = running_trial_past(storage, 1, timeout=150)
    assert victim is not None, "no array task reached the end of an epoch\n" + squeue(array)
    index = victim.user_attrs["sweeper.worker"].rsplit("#", 1)[1].strip()
    subprocess.run(["scancel", "--signal=USR2", f"{array}_{index}"], check=True)
    mid = squeue(array)

    deadline, released = time.monotonic() + 200, False
    while time.monotonic() < deadline:
        held = subprocess.run(["squeue", "-h", "-j", f"{array}_{index}", "-o", "%r"], capture_output=True, text=True)
        if not released and held.stdout.strip() == "BeginTime":  # slurmctld holds a requeued job ~2 min: skip it
            released = not subprocess.run(["scontrol", "update", f"JobId={array}_{index}", "StartTime=now"]).returncode
        states = subprocess.run(
            ["squeue", "--states=all", "--array", "-h", "-j", array, "-o", "%T"], capture_output=True, text=True
        ).stdout.split()
        if len(states) == 2 and all(s not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING") for s in states):
            break
        time.sleep(1)
    final = squeue(array)
    restarts = subprocess.run(["scontrol", "show", "job", f"{array}_{index}"], capture_output=True, text=True).stdout
    status = sweeper("status", str(path), *where, env=env)
    logs = sweeper("logs", str(path), "--task", index, env=env)
    elapsed = time.monotonic() - t0
    print(f"after the signal:\n{mid}\nat the end:\n{final}\n{status.stdout}\nelapsed {elapsed:.0f} s")
    assert states == ["COMPLETED", "COMPLETED"], final + logs.stdout

    # every cell finished once, in one MLflow run; the signalled cell's run was continued, not replaced
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("tiny")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "cell"]
    cells = {c.id for c in expand(load_spec(path))}
    assert sorted(r.data.tags["sweeper.cell"] for r in runs) == sorted(cells), "each cell once, none twice"
    assert all(r.info.status == "FINISHED" for r in runs)
    cell = victim.user_attrs["sweeper.cell"]
    (run,) = [r for r in runs if r.data.tags["sweeper.cell"] == cell]
    assert run.info.run_id == victim.user_attrs["sweeper.mlflow_run"]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert sorted(steps) == list(range(1, 7)), steps  # each epoch logged once: resumed from its checkpoint

    trials = optuna.load_study(study_name="tiny/default", storage=storage).get_trials()
    mine = [t for t in trials if t.user_attrs.get("sweeper.cell") == cell and "sweeper.skip" not in t.user_attrs]
    assert [t.state.name for t in mine] == ["FAIL", "COMPLETE"] and mine[0].user_attrs.get("sweeper.interrupted")
    # either task may resume it (the other one is often idle by then): a worker of this array did
    assert "#" in mine[1].user_attrs["sweeper.worker"], mine[1].user_attrs
    assert "Restarts=1" in restarts and released, restarts
    assert "slurm" in status.stdout and "COMPLETED" in status.stdout and "done 4" in status.stdout, status.stdout
    assert logs.returncode == 0 and "_log.out" in logs.stdout, logs.stdout + logs.stderr
    assert elapsed < 300
