"""Shared fixtures: a real MLflow store in a temp dir, a tiny spec, synthetic CIFAR-shaped data."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

TINY_SPEC = {
    "name": "tiny",
    "title": "Tiny activations",
    "base": {
        "model": {"name": "plain_cnn", "stem": 8, "widths": [16, 32], "hidden": 32},
        "activation": "relu",
        "data": {
            "augment": "weak",
            "batch_size": 16,
            "eval_batch_size": 100,
            "val_size": 50,
            "train_size": 300,
            "test_size": 100,
        },
        "optimizer": {"name": "adam", "lr": 3.0e-3},
        "epochs": 2,
    },
    "seeds": [0],
    "rows": [{"label": "ReLU", "activation": "relu"}, {"label": "GELU", "activation": "gelu"}],
    "table": {
        "columns": [{"key": "label", "header": "Activation Function"}],
        "metrics": [{"key": "test_acc", "header": "Test Accuracy (%)", "format": "percent"}],
    },
    "profiles": {"quick": {"epochs": 1}},
}


# A row that diverges within a step (huge SGD lr plus an L2 penalty): the failed-cell path of a sweep.
DIVERGES = {
    "label": "diverges",
    "optimizer.name": "sgd",
    "optimizer.lr": 10.0,
    "optimizer.momentum": 0.99,
    "loss.penalty": "l2",
    "loss.penalty_weight": 10.0,
}


def need(found: object, reason: str) -> None:
    """A test's system program or shared file: skip with a one-line reason where it is missing, fail under CI.

    `.ci/run` installs every program a test needs (CI=true), so nothing is skipped there; a new user's
    `make test` on a machine without Chromium, PostgreSQL or SLURM is green and lists what it skipped.
    """
    if found:
        return
    reason = " ".join(reason.split())  # one line in pytest's skip summary
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium for plotly's PNG export (kaleido) and headless page checks."""
    path = os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    need(path, "Chromium not installed (apt-get install chromium)")
    return str(path)


@pytest.fixture(autouse=True)
def no_prepared_data(tmp_path: Path, monkeypatch) -> None:
    """Point the data directory at an empty folder, as on CI's clean clone.

    Without this, a developer's ./data/cifar10.npz makes tests pass here that fail on CI;
    tests that need data ask for `data_dir` (synthetic) or pass `data=` directly.
    """
    monkeypatch.setenv("SWEEPER_DATA_DIR", str(tmp_path / "no-prepared-data"))
    # The trainer's "auto" threads watch the machine for 0.2 s per cell: tests fix the count instead
    # (tests/test_speed.py checks "auto" itself).
    monkeypatch.setenv("SWEEPER_THREADS", str(torch.get_num_threads()))
    # Cells' figures HTML only: a PNG costs a headless Chromium render; tests/runs/test_tracking.py turns
    # it back on where PNGs are what it checks.
    monkeypatch.setenv("SWEEPER_PNG", "0")


@pytest.fixture(autouse=True)
def fresh_user_code():
    """Each test loads the user's code its own specs name: files of one name in other tests' folders
    would make a reference ambiguous in this one process."""
    from sweeper.schema import plugins

    yield
    plugins.clear_cache()


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec dict (default: the tiny 2-row spec, with overrides) to a YAML file."""

    def write(spec: dict | None = None, name: str = "spec.yaml", **changes) -> Path:
        body = {**(spec or TINY_SPEC), **changes}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path

    return write


@pytest.fixture
def store_uri(tmp_path: Path) -> str:
    """A fresh sqlite MLflow store (artifacts beside it) in the test's temp dir."""
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def synthetic_data():
    """Learnable CIFAR-shaped (train, test) splits, made once per session."""
    from sweeper.training.data import synthetic

    return synthetic(n_train=600, n_test=200, seed=0)


@pytest.fixture(scope="session")
def small(synthetic_data):
    """Tiny splits of the synthetic set: 96 training, 20 validation and 40 test images."""
    from sweeper.training.data import make_splits

    return make_splits(*synthetic_data, val_size=20, train_size=96, test_size=40, seed=0)


@pytest.fixture
def data_dir(tmp_path: Path, synthetic_data, monkeypatch) -> Path:
    """A prepared data dir holding the synthetic set, as `sweeper data prepare` would leave it."""
    from sweeper.training.data import CACHE_NAME, _write_cache

    path = tmp_path / "data"
    _write_cache(path / CACHE_NAME, *synthetic_data, "synthetic")
    monkeypatch.setenv("SWEEPER_DATA_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (sqlite backend, served artifacts) on a free loopback port, once per session."""
    from sweeper.runs import server

    root = tmp_path_factory.mktemp("mlflow-server")
    running = server.start(root / "store", log=root / "server.log")
    yield running.url
    running.stop()


def free_port() -> int:
    """A TCP port nothing listens on now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (own data dir, free loopback port): (admin URL, psql)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    need(bins, "PostgreSQL server not installed (apt-get install postgresql)")
    bindir = Path(bins[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="sweeper-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and pg_ctl refuse root: run them as the postgres user on a dir it owns
        pg = pwd.getpwnam("postgres")
        os.chown(base, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), base / "data"
    subprocess.run(
        [*as_user, bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c max_connections=50"
    subprocess.run(
        [*as_user, bindir / "pg_ctl", "-D", data, "-l", base / "log", "-o", opts, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield (
            f"postgresql://postgres@127.0.0.1:{port}",
            [bindir / "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
        )
    finally:
        subprocess.run([*as_user, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url(postgres_server, request):
    """An empty database of the session's PostgreSQL server for one test module (a server start is seconds)."""
    url, psql = postgres_server
    name = "sweeps_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    subprocess.run([*psql, "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return f"{url}/{name}"


# --- test tiers (markers in pyproject.toml; `make test-fast` runs `-m unit`) ----------------------
# A test's tier is the heaviest of its own mark and what its fixtures imply: a server or a database
# server (server), data that a sweep trains on (train), a tracking store (store), else in-process (unit).
TIERS = ("unit", "store", "train", "server")
_IMPLIED = (
    ("server", {"mlflow_server", "postgres_server", "postgres_url", "blackhole"}),
    ("train", {"data_dir", "synthetic_data"}),
    ("store", {"store_uri", "known", "pristine", "shared_store"}),  # the last three: module-wide sqlite stores
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test exactly one tier mark, so that `-m unit` (or store, train, server) selects a tier."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        marked = [m.name for m in item.iter_markers() if m.name in TIERS]
        implied = [tier for tier, names in _IMPLIED if fixtures & names]
        tier = max([*marked, *implied, "unit"], key=TIERS.index)
        item.own_markers = [m for m in item.own_markers if m.name not in TIERS]
        item.add_marker(tier)
