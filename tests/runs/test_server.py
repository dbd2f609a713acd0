"""`sweeper server` after a crash: restarted at once on its port, its `mlflow server` gone with it, and a
process still holding the port named with how to stop it. Real servers on loopback, killed by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from conftest import TINY_SPEC
from mlflow import MlflowClient
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.runs import server


def linger(port: int) -> None:
    """Leave a server-side connection of `port` in TIME_WAIT, as a server that just died leaves its clients'
    (its listener bound with SO_REUSEADDR, as uvicorn binds)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()  # the server's end closes first: it is the one that waits in TIME_WAIT
        client.recv(1)
        client.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the old port check did: refused for about a minute


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_port_with_lingering_connections_is_free_to_serve_on(tmp_path):
    port = server.free_port()
    linger(port)
    running = server.start(tmp_path / "mlruns", port=port)
    try:
        assert healthy(running.url)
    finally:
        running.stop()


def test_kill_9_of_sweeper_server_takes_its_mlflow_server_along_and_it_restarts_at_once(tmp_path):
    port = server.free_port()
    env = {**os.environ, "SWEEPER_STORE_DIR": str(tmp_path / "mlruns")}
    cmd = [sys.executable, "-m", "sweeper", "server", "--port", str(port), "--workers", "1"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not healthy(url):
            assert first.poll() is None and time.monotonic() < deadline, "sweeper server never answered"
            time.sleep(0.25)
        family = psutil.Process(first.pid).children(recursive=True)
        assert any("mlflow" in " ".join(p.cmdline()) for p in family)
        os.kill(first.pid, signal.SIGKILL)  # the process alone, not its group
        first.wait()
        gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, f"left behind: {[p.cmdline()[:4] for p in alive]}"
    finally:
        first.kill()
    linger(port)  # and its clients' connections linger, as after a real crash
    again = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not healthy(url):
            if again.poll() is not None:
                pytest.fail(f"restart refused: {again.stdout.read() if again.stdout else ''}")
            assert time.monotonic() < deadline, "the restarted server never answered"
            time.sleep(0.25)
    finally:
        again.send_signal(signal.SIGINT)  # Ctrl-C: it stops its own server
        again.wait(30)


def test_a_process_holding_the_port_is_named_with_how_to_stop_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPER_STORE_DIR", str(tmp_path / "mlruns"))
    code = "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(600)"
    orphan = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert orphan.stdout is not None
        port = int(orphan.stdout.readline())
        result = CliRunner().invoke(app, ["server", "--port", str(port)])
    finally:
        orphan.kill()
        orphan.wait()
    assert result.exit_code == 2, result.output
    assert f"process {orphan.pid}" in result.output and f"kill {orphan.pid}" in result.output
    assert not Path(tmp_path / "mlruns").exists()


def serve(port: int, store: Path) -> subprocess.Popen:
    """`sweeper server` on a port, once it answers."""
    env = {**os.environ, "SWEEPER_STORE_DIR": str(store)}
    cmd = [sys.executable, "-m", "sweeper", "server", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not healthy(f"http://127.0.0.1:{port}"):
        assert proc.poll() is None and time.monotonic() < deadline, "sweeper server never answered"
        time.sleep(0.25)
    return proc


@pytest.mark.slow
def test_a_server_that_dies_mid_sweep_stops_it_cleanly_and_the_same_command_finishes(write_spec, data_dir, tmp_path):
    port, served = server.free_port(), tmp_path / "served"
    url = f"http://127.0.0.1:{port}"
    rows = [{"label": "ReLU", "activation": "relu", "epochs": 1}, {"label": "GELU", "activation": "gelu", "epochs": 6}]
    base = {**TINY_SPEC["base"], "data": {**TINY_SPEC["base"]["data"], "train_size": 160}}
    spec = write_spec({**TINY_SPEC, "name": "outage", "rows": rows, "base": base})
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": url,
        "SWEEPER_STORE_DIR": str(tmp_path / "mlruns"),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "sweeper", "run", str(spec), "--device", "cpu"]
    first_server = serve(port, served)
    log = tmp_path / "first.log"
    sweep = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        client = MlflowClient(url)
        deadline = time.monotonic() + 240
        while True:  # GELU, the second cell, has stored an epoch: the server dies under it
            assert sweep.poll() is None and time.monotonic() < deadline, log.read_text()
            exp = client.get_experiment_by_name("outage")
            runs = client.search_runs([exp.experiment_id], "tags.`sweeper.row` = 'GELU'") if exp else []
            if runs and client.get_metric_history(runs[0].info.run_id, "train_loss"):
                break
            time.sleep(0.1)
        os.kill(first_server.pid, signal.SIGKILL)  # its watchdog takes the mlflow server down with it
        first_server.wait()
        assert sweep.wait(timeout=300) == 2, log.read_text()
    finally:
        sweep.kill()
        first_server.kill()
    out = log.read_text()
    assert f"MLflow server at {url} stopped answering" in out and "Traceback" not in out, out
    again = serve(port, served)
    try:
        storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
        status = CliRunner().invoke(app, ["status", str(spec), "--tracking-uri", url, "--storage", storage])
        table = CliRunner().invoke(app, ["table", "outage", "--tracking-uri", url])
        assert "done 1, running 0, failed 0, pruned 0, left 1" in status.output, status.output
        assert "| GELU | interrupted |" in table.output, table.output  # the two agree: stopped, to be continued
        rerun = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        [gelu] = client.search_runs([exp.experiment_id], "tags.`sweeper.row` = 'GELU'")
        assert gelu.info.run_id == runs[0].info.run_id and gelu.info.status == "FINISHED"
        assert int(gelu.data.tags["sweeper.resumed_from_epoch"]) >= 1
        steps = [m.step for m in client.get_metric_history(gelu.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, 7)), "every epoch once, in order"
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(30)
