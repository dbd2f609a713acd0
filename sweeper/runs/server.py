"""`sweeper server`: a real `mlflow server` over the local store, on loopback unless told otherwise.

Backend: the same sqlite file `sweeper run` writes without a server (mlruns/mlflow.db); artifacts
are served by the server from mlruns/artifacts, so clients upload and download through HTTP and
need no access to the disk.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from sweeper.errors import UserError
from sweeper.vocab import UI_MODE


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 / ::1: nobody else on the network can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui_url(base: str, experiment_id: str | None = None) -> str:
    """The MLflow UI's page of an experiment (or its experiments list) in the model-training view."""
    page = f"experiments/{experiment_id}" if experiment_id else "experiments"
    return f"{base.rstrip('/')}/#/{page}?{UI_MODE}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port(host: str, port: int) -> None:
    """A UserError, naming the process that holds the port when it can be found, unless `port` is free."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # As servers bind (uvicorn too): connections of a server that just died linger in TIME_WAIT for
        # about a minute, and a plain bind would refuse the port although nothing listens on it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            holder = _listener(port)
            who = (
                f"process {holder[0]} (`{holder[1]}`) listens there; if it is an old server, stop it with "
                f"`kill {holder[0]}`, or pick"
                if holder
                else "another server may be running there. Pick"
            )
            raise UserError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); {who} another port with --port."
            ) from None


def _listener(port: int) -> tuple[int, str] | None:
    """(pid, command line) of the process listening on a TCP port, when this user may see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid, " ".join(psutil.Process(conn.pid).cmdline())[:200]
    except (psutil.Error, OSError):  # other users' sockets, or a platform that hides them
        pass
    return None


# Stops the server group when the process that started it is gone, even by kill -9: the server
# runs in its own session (so a terminal's Ctrl-C reaches only us), which would otherwise outlive us.
_WATCHDOG = """
import os, signal, sys, time
parent, group = int(sys.argv[1]), int(sys.argv[2])
while os.getppid() == parent:
    time.sleep(0.5)
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        sys.exit()
for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        break
    time.sleep(3)
"""


def command(store_dir: Path, host: str, port: int, workers: int = 1) -> list[str]:
    """The `mlflow server` command line for a store directory (sqlite backend, served artifacts)."""
    store_dir = store_dir.resolve()
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{store_dir / 'mlflow.db'}",
        "--artifacts-destination",
        str(store_dir / "artifacts"),
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


@dataclass
class Server:
    """A running `mlflow server` child process and the URL clients use."""

    url: str
    process: subprocess.Popen
    log: Path | None = None
    watchdog: subprocess.Popen | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the server and its workers (the whole process group)."""
        if self._stopped:
            return
        self._stopped = True
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def wait(self) -> int:
        """Block until the server exits; returns its exit code."""
        return self.process.wait()


def _check_ui_installed() -> None:
    """`mlflow server` is the full mlflow package; sweeper itself needs only mlflow-skinny (a GPU node's install)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("mlflow")
    except PackageNotFoundError:
        raise UserError(
            "the MLflow server and UI need the full mlflow package, and this environment has only "
            "mlflow-skinny (enough to train and log). Install it with: pip install 'sweeper[ui]' "
            "(from a checkout: pip install -e '.[ui]'), or point MLFLOW_TRACKING_URI at a server elsewhere."
        ) from None


def start(
    store_dir: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    workers: int = 1,
    allow_remote: bool = False,
    log: Path | None = None,
    timeout: float = 120.0,
) -> Server:
    """Start `mlflow server` over store_dir and wait until /health answers; errors are UserErrors."""
    if not is_loopback(host) and not allow_remote:
        raise UserError(
            f"--host {host} would accept connections from other machines, and the server has no "
            "authentication. Pass --allow-remote if that is what you want (see README: basic-auth), "
            "or keep the default 127.0.0.1."
        )
    _check_ui_installed()
    if port is None:
        port = free_port(host)
    _check_port(host, port)
    store_dir.mkdir(parents=True, exist_ok=True)
    (store_dir / "artifacts").mkdir(exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
    # MLflow's job runner (GenAI scoring, trace archival) forks seven more Python processes that
    # sweeper never uses; without it the server starts several times faster.
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
    }
    # Its own process group, so stopping it also stops the uvicorn workers it forks.
    proc = subprocess.Popen(
        command(store_dir, host, port, workers),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    watchdog = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(os.getpid()), str(proc.pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connect = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # a wildcard bind answers on loopback too
    server = Server(f"http://{f'[{connect}]' if ':' in connect else connect}:{port}", proc, log, watchdog)
    try:
        wait_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: Server, timeout: float) -> None:
    """Poll GET /health until it answers 200; a server that exits or stays silent is a UserError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:] if server.log and server.log.exists() else ""
            raise UserError(
                f"mlflow server exited with code {server.process.returncode} before answering "
                f"on {server.url}.{' Its last output:' + chr(10) + tail if tail else ''}"
            )
        try:
            if requests.get(server.url + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise UserError(f"mlflow server did not answer on {server.url}/health within {timeout:.0f} s.")
