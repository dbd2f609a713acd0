"""Several worker processes on one study: a real local sqlite storage and a real PostgreSQL on loopback."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers import cell_runs, grid_spec, running_trial_past
from rich.console import Console

from sweeper import sweep
from sweeper.schema.spec import expand, load_spec
from sweeper.sweep.launchers import launcher

pytestmark = pytest.mark.server  # worker processes, and a real PostgreSQL

# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_finish_a_grid_each_cell_exactly_once(backend, write_spec, store_uri, data_dir, request):
    storage = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    path = write_spec(grid_spec(activation=["relu", "gelu"], **{"optimizer.lr": [1e-3, 3e-3]}))
    report = sweep.run(path, tracking_uri=store_uri, device="cpu", console=Console(quiet=True), jobs=2, storage=storage)
    assert len(report.finished) == 4 and not report.failed, report

    runs = cell_runs(store_uri)
    cells = {c.id for c in expand(load_spec(path))}
    assert sorted(r.data.tags["sweeper.cell"] for r in runs) == sorted(cells), "every cell ran exactly once"
    assert all(r.info.status == "FINISHED" for r in runs)
    sw = sweep.open_sweep(path, tracking_uri=store_uri, storage=storage)
    if backend == "sqlite":
        assert Path(store_uri.removeprefix("sqlite:///")).with_name("optuna.db").is_file(), (
            "local storage beside MLflow"
        )
    complete = [t for t in sw.study.get_trials() if t.state.name == "COMPLETE"]
    others = [t for t in sw.study.get_trials() if t.state.name != "COMPLETE"]
    assert all("sweeper.skip" in t.user_attrs for t in others), "only empty claims may be left over"
    assert sorted(t.user_attrs["sweeper.cell"] for t in complete) == sorted(cells)
    by_run = {r.info.run_id: r for r in runs}
    for t in complete:
        tags = by_run[t.user_attrs["sweeper.mlflow_run"]].data.tags
        assert tags["sweeper.study"] == sw.name and tags["sweeper.trial"] == str(t.number)
    assert len({t.user_attrs["sweeper.worker"] for t in complete}) == 2, "both workers trained cells"
    snap, _ = sweep.status(path, storage=storage, tracking_uri=store_uri)
    assert (snap.count("done"), snap.count("left"), snap.count("running"), snap.count("failed")) == (4, 0, 0, 0)
    # `sweeper logs` finds both workers' logs by the spec's name (its file is spec.yaml, its name tiny)
    logs = launcher("local").logs(load_spec(path).name, store_uri)
    assert [f.name for f in logs] == ["tiny-worker0.log", "tiny-worker1.log"], logs


def _worker(path: Path, store_uri: str, index: int, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "sweeper",
        "worker",
        str(path),
        "--tracking-uri",
        store_uri,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--heartbeat",
        "1",
        "--index",
        str(index),
    ]
    with log.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def test_a_worker_killed_mid_cell_has_its_cell_finished_by_the_other(write_spec, store_uri, data_dir, tmp_path):
    path = write_spec(grid_spec(epochs=4, activation=["relu", "gelu"]))
    sweep.status(path, tracking_uri=store_uri)  # create both stores first: MLflow's sqlite migrations do not race well
    procs = [_worker(path, store_uri, i, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        storage = sweep.storage_url(None, store_uri)
        victim = running_trial_past(storage, 1, timeout=240)
        assert victim is not None, "no worker reached the end of an epoch"
        pid = int(victim.user_attrs["sweeper.worker"].split(":")[1].split()[0])
        killed = next(p for p in procs if p.pid == pid)
        killed.send_signal(signal.SIGKILL)
        killed.wait()  # reap it: a zombie still answers kill(pid, 0), and looks alive to the resume check
        survivor = next(p for p in procs if p is not killed)
        assert survivor.wait(timeout=240) == 0, (tmp_path / "w0.log").read_text() + (tmp_path / "w1.log").read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    trials = optuna.load_study(study_name="tiny/default", storage=storage).get_trials()
    cell = victim.user_attrs["sweeper.cell"]
    mine = [t for t in trials if t.user_attrs.get("sweeper.cell") == cell and "sweeper.skip" not in t.user_attrs]
    assert [t.state.name for t in mine] == ["FAIL", "COMPLETE"], "the stale trial failed, its retry completed"
    assert mine[1].system_attrs.get("failed_trial") == victim.number
    assert mine[1].user_attrs["sweeper.worker"] != victim.user_attrs["sweeper.worker"]
    runs = [r for r in cell_runs(store_uri) if r.data.tags["sweeper.cell"] == cell]
    assert [r.info.status for r in runs] == ["FINISHED"], "one run per cell, finished"
    # the replacement continued the killed worker's MLflow run from its checkpoint
    assert runs[0].info.run_id == victim.user_attrs["sweeper.mlflow_run"] == mine[1].user_attrs["sweeper.mlflow_run"]
    assert runs[0].data.tags["sweeper.trial"] == str(mine[1].number)
    assert len([r for r in cell_runs(store_uri) if r.info.status == "FINISHED"]) == 2


def test_progress_display_shows_counts_and_each_workers_epoch():
    from sweeper.sweep import workers
    from sweeper.sweep.ledger import Snapshot

    snap = Snapshot(
        {"a": "done", "b": "running", "c": "failed", "d": "left", "e": "pruned"},
        {k: f"cell {k}" for k in "abcde"},
        active=[("host:12 #0", "cell b", 3, 10)],
        extra_left=2,
    )
    console = Console(record=True, width=120)
    console.print(workers.render(snap, []))
    text = console.export_text()
    assert "1 done · 1 running · 1 failed · 1 pruned · 3 left" in text
    assert "host:12 #0" in text and "cell b" in text and "3/10" in text


# --- several workers on one GPU (--devices 0,0,1,1) -----------------------------------------


def test_packing_gives_each_worker_its_own_one_entry_mask(tmp_path, capsys):
    from sweeper.sweep import workers

    one_each = workers.assignments(None, None, "auto", gpu_count=2, environ={})
    assert [env["CUDA_VISIBLE_DEVICES"] for env, _, _ in one_each] == ["0", "1"], "the default stays one per GPU"
    packed = workers.assignments(None, [0, 0, 1, 1], "auto", gpu_count=2, environ={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert [env["CUDA_VISIBLE_DEVICES"] for env, _, _ in packed] == ["2", "2", "3", "3"]
    assert all(device == "cuda" for _, device, _ in packed)
    assert "no MPS daemon runs" in capsys.readouterr().err, "packing without MPS time-slices: say so"
    (tmp_path / "control").touch()  # an MPS daemon's pipe
    workers.assignments(None, [0, 0], "auto", gpu_count=1, environ={"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)})
    assert "MPS" not in capsys.readouterr().err


def test_two_workers_on_one_device_claim_distinct_cells(write_spec, store_uri, data_dir, monkeypatch):
    """`--devices 0,0` as planned for one GPU (both workers masked to it), trained on the CPU here."""
    from sweeper.sweep import local, workers

    planned = workers.assignments

    def one_gpu_twice(jobs, devices, device, **_):
        plan = planned(jobs, devices, "auto", gpu_count=1, environ={})
        assert [env["CUDA_VISIBLE_DEVICES"] for env, _, _ in plan] == ["0", "0"]
        return [(env, "cpu", 1) for env, _, _ in plan]  # no GPU here: the same masks, trained on the CPU

    monkeypatch.setattr(local.workers, "assignments", one_gpu_twice)
    path = write_spec(grid_spec(activation=["relu", "gelu"], **{"optimizer.lr": [1e-3, 3e-3]}))
    report = sweep.run(path, tracking_uri=store_uri, device="cpu", console=Console(quiet=True), devices=[0, 0])
    assert len(report.finished) == 4 and not report.failed, report
    cells = sorted(r.data.tags["sweeper.cell"] for r in cell_runs(store_uri))
    assert cells == sorted({c.id for c in expand(load_spec(path))}), "each cell once, none twice"
    sw = sweep.open_sweep(path, tracking_uri=store_uri)
    complete = [t for t in sw.study.get_trials() if t.state.name == "COMPLETE"]
    assert len({t.user_attrs["sweeper.worker"] for t in complete}) == 2, "both workers on the device trained cells"
