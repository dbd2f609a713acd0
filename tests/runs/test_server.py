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
