"""The `sweeper` command: exit codes, one-paragraph errors, nothing written on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sweeper.cli import app

runner = CliRunner()


def test_validate_lists_cells(write_spec):
    result = runner.invoke(app, ["validate", str(write_spec())])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tiny, 2 cells" in out and "base: plain_cnn, relu, adam lr=0.003" in out
    assert "ReLU: as base" in out and "GELU: activation=gelu" in out


def test_bad_spec_exits_2_without_traceback_and_writes_nothing(write_spec, tmp_path, store_uri):
    path = write_spec(rows=[{"label": "x", "activation": "swish"}])
    for args in (["validate", str(path)], ["run", str(path), "--tracking-uri", store_uri]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "rows.0.activation" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "store").exists(), "nothing was written to MLflow"


def test_unknown_profile_and_missing_dataset_exit_2(write_spec, tmp_path, store_uri, monkeypatch):
    monkeypatch.setenv("SWEEPER_DATA_DIR", str(tmp_path / "nodata"))
    path = write_spec()
    result = runner.invoke(app, ["run", str(path), "--profile", "slow", "--tracking-uri", store_uri])
    assert result.exit_code == 2 and "no profile 'slow'" in result.output
    result = runner.invoke(app, ["run", str(path), "--tracking-uri", store_uri])
    assert result.exit_code == 2 and "sweeper data prepare" in result.output
    assert not (tmp_path / "store").exists(), "a missing dataset fails before the store or the study is created"


def test_unreachable_server_and_bad_device_exit_2(write_spec, data_dir):
    path = write_spec()
    result = runner.invoke(app, ["run", str(path), "--tracking-uri", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "cannot reach the MLflow server at http://127.0.0.1:9" in result.output
    result = runner.invoke(app, ["run", str(path), "--device", "tpu:7"])
    assert result.exit_code == 2 and "device 'tpu:7'" in result.output


def test_run_then_table_through_the_cli(write_spec, data_dir, store_uri):
    path = write_spec()
    result = runner.invoke(
        app, ["run", str(path), "--profile", "quick", "--tracking-uri", store_uri, "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["table", "tiny", "--tracking-uri", store_uri])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("| Activation Function | Test Accuracy (%) |")
    assert "profile: quick" in result.output, "defaults to the profile of the latest sweep"
    result = runner.invoke(app, ["table", "nosuch", "--tracking-uri", store_uri])
    assert result.exit_code == 2 and "no sweep named 'nosuch'" in result.output and "tiny" in result.output


def test_data_prepare_needs_a_source(tmp_path):
    result = runner.invoke(app, ["data", "prepare", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--from PATH" in result.output
    result = runner.invoke(app, ["data", "prepare", "--from", str(tmp_path / "missing"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and str(tmp_path / "missing") in result.output


def test_console_script_exit_code_and_plain_paragraph(write_spec):
    """The installed entry point, as a user runs it: exit 2, no traceback on stderr."""
    path = write_spec(epochs="many")
    exe = Path(sys.executable).with_name("sweeper")
    proc = subprocess.run(
        [str(exe), "validate", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr


def _cell_runs(store_uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    return client.search_runs([exp.experiment_id]) if exp else []
