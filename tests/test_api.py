"""The notebook API (sweeper/api.py): the example notebook on a real store, `--raw` CSV, a cheap import."""

from __future__ import annotations

import copy
import csv
import io
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SPEC
from typer.testing import CliRunner

from sweeper.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_notebook_example_runs_in_a_subfolder_and_finds_the_projects_store(tmp_path, data_dir, monkeypatch, capsys):
    # A project as users lay it out: experiments/ at the root, the notebook in notebooks/, run from there.
    project = tmp_path / "project"
    (project / "experiments").mkdir(parents=True)
    (project / "notebooks").mkdir()
    spec = copy.deepcopy(TINY_SPEC)
    spec["seeds"] = [0, 1]
    spec["profiles"] = {"quick": {"epochs": 1, "data.train_size": 96, "data.val_size": 20, "data.test_size": 40}}
    (project / "experiments" / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for var in ("MLFLOW_TRACKING_URI", "SWEEPER_TRACKING_URI", "SWEEPER_STORE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(project / "notebooks")
    monkeypatch.setenv("SWEEPER_EXAMPLE_SPEC", "../experiments/tiny.yaml")
    monkeypatch.setenv("SWEEPER_EXAMPLE_PROFILE", "quick")

    scope = runpy.run_path(str(REPO / "examples" / "notebook.py"), run_name="__main__")

    store = project / "mlruns" / "mlflow.db"
    assert store.is_file() and not (project / "notebooks" / "mlruns").exists()
    assert f"store sqlite:///{store}" in capsys.readouterr().err  # what was found is printed
    frame, runs = scope["frame"], scope["runs"]
    assert list(frame.index) == ["ReLU", "GELU"]
    for label in frame.index:
        row = frame.loc[label]
        values = row["test_acc.values"]
        assert row["test_acc.n"] == 2 == len(values) and all(0.0 <= v <= 1.0 for v in values)
        assert row["test_acc.mean"] == pytest.approx(sum(values) / 2)
    assert frame["test_acc.best"].sum() == 1
    assert frame.loc[~frame["test_acc.best"], "test_acc.p"].notna().all()  # two seeds a side: Welch's p
    assert len(runs) == 4 and set(runs["state"]) == {"finished"}
    assert set(runs["params.activation"]) == {"relu", "gelu"} and runs["metrics.test_acc"].between(0, 1).all()
    assert (runs["tags.sweeper.role"] == "cell").all() and sorted(runs["seed"]) == [0, 0, 1, 1]

    # the command line gives the same numbers, unformatted
    uri = f"sqlite:///{store}"
    result = CliRunner().invoke(app, ["table", "tiny", "-p", "quick", "--tracking-uri", uri, "-f", "csv", "--raw"])
    assert result.exit_code == 0, result.output
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    for label in frame.index:
        assert float(rows[label]["test_acc.mean"]) == frame.loc[label, "test_acc.mean"]
        assert float(rows[label]["test_acc.std"]) == frame.loc[label, "test_acc.std"]
        assert [float(v) for v in rows[label]["test_acc.values"].split(";")] == frame.loc[label, "test_acc.values"]
    wrong = CliRunner().invoke(app, ["table", "tiny", "--tracking-uri", uri, "--raw"])
    assert wrong.exit_code == 2 and "-f csv" in wrong.output


def test_import_sweeper_is_cheap_and_exposes_the_api():
    code = (
        "import sys, sweeper; assert 'torch' not in sys.modules and 'sweeper.api' not in sys.modules; "
        "assert callable(sweeper.table) and callable(sweeper.run) and callable(sweeper.cell_runs); "
        "assert 'torch' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
