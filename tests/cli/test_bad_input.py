"""The runtime half of bad input: bad stores, storages and data dirs are one-paragraph errors (exit 2) that write
nothing; batch pickles run no code; passwords in URLs never show in messages, logs, reports or `ps`."""

from __future__ import annotations

import io
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import need
from helpers import free_port, grid_spec, write_batches
from rich.console import Console
from typer.testing import CliRunner

from sweeper import sweep
from sweeper.cli import app
from sweeper.errors import UserError, warn
from sweeper.secrets import mask_uri
from sweeper.sweep.workers import Launch, command
from sweeper.tables import report as reporting
from sweeper.training.data import prepare
from sweeper.training.sources import _load_batch, read_source

REAL_BATCHES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cifar-10-python.tar.gz"
PASSWORD = "S3cretPw"


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def blackhole():
    """A loopback port that accepts TCP connections and never answers: a hung database server."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_an_error_prints_brackets_as_written(tmp_path):
    """A message naming `sweeper[ui]` or a path with brackets is text: rich markup once ate "[ui]"."""
    missing = tmp_path / "runs[ui]" / "spec[1].yaml"
    result = invoke("validate", str(missing))
    assert result.exit_code == 2 and str(missing) in " ".join(result.output.split()), result.output


# --- stores and storages ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("command", ["run", "table"])
def test_garbage_tracking_uri_is_a_user_error(command, how, write_spec, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec()
    before = files_under(tmp_path)
    args = [command, str(spec) if command == "run" else "tiny"]
    env = {"MLFLOW_TRACKING_URI": "garbage://x"} if how == "env" else None
    result = invoke(*args, *(["--tracking-uri", "garbage://x"] if how == "flag" else []), env=env)
    assert result.exit_code == 2, result.output
    assert "garbage://x" in result.output and "Traceback" not in result.output
    assert files_under(tmp_path) == before, "nothing written"


def test_down_postgres_store_fails_in_seconds(tmp_path, monkeypatch, blackhole):
    monkeypatch.chdir(tmp_path)
    closed = free_port()
    for port in (closed, blackhole):  # refused (MLflow alone retried ~110 s), and a server that never answers
        start = time.monotonic()
        result = invoke("table", "tiny", "--tracking-uri", f"postgresql://u:{PASSWORD}@127.0.0.1:{port}/db")
        assert result.exit_code == 2, result.output
        assert time.monotonic() - start < 30
        assert "cannot connect to the MLflow database" in result.output and PASSWORD not in result.output
    assert files_under(tmp_path) == set()


def test_down_postgres_storage_fails_in_seconds_and_writes_nothing(write_spec, data_dir, tmp_path, blackhole):
    spec, store = write_spec(), tmp_path / "store"
    start = time.monotonic()
    storage = f"postgresql://u:{PASSWORD}@127.0.0.1:{blackhole}/db"
    result = invoke("run", str(spec), "--storage", storage, "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert result.exit_code == 2 and "cannot open the sweep storage" in result.output, result.output
    assert time.monotonic() - start < 30 and PASSWORD not in result.output
    assert not store.exists(), "the MLflow store is created only once the storage opened"


def test_garbage_storage_and_table_reads_write_nothing(write_spec, data_dir, tmp_path):
    spec, store = write_spec(), tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    result = invoke("run", str(spec), "--storage", "garbage", "--tracking-uri", uri)
    assert result.exit_code == 2 and "garbage" in result.output, result.output
    result = invoke("table", "tiny", "--tracking-uri", uri)
    assert result.exit_code == 2 and "no MLflow store at" in result.output, result.output
    result = invoke("report", "--tracking-uri", uri, "--out", str(tmp_path / "results"))
    assert result.exit_code == 2, result.output
    assert not store.exists() and not (tmp_path / "results").exists()


# --- data prepare -----------------------------------------------------------------------------


@pytest.fixture
def batches(tmp_path: Path) -> Path:
    folder = tmp_path / "src" / "cifar-10-batches-py"
    write_batches(folder)
    return folder


def test_truncated_archive_is_a_user_error(batches, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    result = invoke("data", "prepare", "--from", str(archive), "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2 and "truncated" in result.output, result.output
    assert not (tmp_path / "data").exists()


def test_data_dir_under_a_regular_file(batches, tmp_path):
    (tmp_path / "afile").write_text("x")
    result = invoke("data", "prepare", "--from", str(batches), "--data-dir", str(tmp_path / "afile" / "data"))
    assert result.exit_code == 2 and "is a file, not a folder" in result.output, result.output


@pytest.mark.server  # a `sweeper` subprocess with dropped capabilities
def test_read_only_data_dir(batches, tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    # root writes through mode bits: run the command as root without that capability
    drop = ["dac_override", "dac_read_search"]
    caps = ["setpriv", f"--inh-caps=-{',-'.join(drop)}", f"--bounding-set=-{',-'.join(drop)}", "--"]
    result = subprocess.run(
        [*(caps if os.geteuid() == 0 else []), sys.executable, "-m", "sweeper", "data", "prepare"]
        + ["--from", str(batches), "--data-dir", str(readonly / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "read-only" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and list(readonly.iterdir()) == []


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_batch_runs_no_code(batches, tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"data": _Exploit(marker), "labels": [0]}, protocol=2)
    pickle.loads(pickle.dumps(_Exploit(tmp_path / "proof")))  # the payload works with a plain unpickler
    assert (tmp_path / "proof").exists()
    (batches / "data_batch_1").write_bytes(blob)
    with pytest.raises(UserError, match=r"data_batch_1: not a CIFAR-10 batch .*refusing to load posix.system"):
        read_source(batches, progress=False)
    assert not marker.exists()
    result = invoke("data", "prepare", "--from", str(batches), "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2 and "refusing" in result.output and not marker.exists()


def test_real_batches_load_through_the_restricted_unpickler():
    need(REAL_BATCHES.is_file(), f"{REAL_BATCHES} is missing (the shared original CIFAR-10)")
    with tarfile.open(REAL_BATCHES, "r|gz") as tar:
        member = next(m for m in tar if m.name.endswith("data_batch_1"))
        entry = _load_batch(tar.extractfile(member).read())  # type: ignore[union-attr]
    assert entry["data"].shape == (10000, 3072) and str(entry["data"].dtype) == "uint8"
    assert len(entry["labels"]) == 10000 and set(entry["labels"]) == set(range(10))


def test_synthetic_batches_of_every_protocol_still_prepare(batches, tmp_path):
    for protocol in (2, 4, 5):
        for name in ("data_batch_1", "test_batch"):
            entry = pickle.loads((batches / name).read_bytes())
            (batches / name).write_bytes(pickle.dumps(entry, protocol=protocol))
        prepare(tmp_path / f"cache{protocol}", batches, progress=False)


# --- passwords --------------------------------------------------------------------------------


def test_mask_uri():
    assert mask_uri("in postgresql+psycopg://u:p@ss@h:5/db?x=1 now") == "in postgresql+psycopg://u:***@h:5/db?x=1 now"
    assert mask_uri("http://h:5000/x and sqlite:////a/b.db") == "http://h:5000/x and sqlite:////a/b.db"


def test_worker_command_line_holds_no_url():
    launch = Launch(
        Path("s.yaml"),
        "s",
        None,
        f"postgresql://u:{PASSWORD}@h/db",
        f"postgresql://u:{PASSWORD}@h/m",
        "cpu",
        10,
        Path("w"),
    )
    assert not any(PASSWORD in part or "://" in part for part in command(launch, 0, "cpu", 1))


def _cmdlines(needle: str) -> dict[int, str]:
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in line and " worker " in line:
            found[int(proc.name)] = line
    return found


def test_no_password_in_argv_logs_console_report_or_errors(
    postgres_url,  # noqa: F811
    write_spec,
    data_dir,
    tmp_path,
    monkeypatch,
):
    monkeypatch.chdir(tmp_path)
    storage = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")
    tracking_uri = storage.replace("postgresql://", "postgresql+psycopg://").replace("/sweeps", "/runs14")
    with sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://")).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            f"CREATE DATABASE {tracking_uri.rsplit('/', 1)[1]}"
        )
    path = write_spec(grid_spec())
    out = io.StringIO()
    seen: dict[int, str] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(_cmdlines(str(path)))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = sweep.run(
            path, tracking_uri=tracking_uri, storage=storage, device="cpu", jobs=2, console=Console(file=out, width=200)
        )
    finally:
        done.set()
        watcher.join()
    assert len(report.finished) == 6, (report, out.getvalue())
    assert len(seen) >= 2, "both workers were seen"
    assert not [line for line in seen.values() if PASSWORD in line]
    logs = list((tmp_path / "mlruns" / "workers").glob("*.log"))
    assert len(logs) == 2 and all(log.stat().st_mode & 0o777 == 0o600 for log in logs)
    assert all("-> postgresql+psycopg://postgres:***@" in log.read_text() for log in logs)
    shown = out.getvalue() + "".join(log.read_text() for log in logs)
    report_md = reporting.report(tmp_path / "results", tracking_uri, figures=False).read_text()
    assert "postgres:***@" in report_md
    result = invoke("table", "nosuch", "--tracking-uri", tracking_uri)
    assert result.exit_code == 2 and "postgres:***@" in result.output
    status = invoke("status", str(path), "--tracking-uri", tracking_uri, env={"SWEEPER_STORAGE": storage})
    assert status.exit_code == 0 and "done 6" in status.output, status.output
    for text in (shown, report_md, result.output, status.output):
        assert PASSWORD not in text


def test_warnings_mask_passwords(capsys):
    warn(f"could not reach postgresql+psycopg://postgres:{PASSWORD}@db:5432/runs (connection refused)")
    err = capsys.readouterr().err
    assert PASSWORD not in err and "postgres:***@db:5432/runs" in err
