"""The sweep engine on a real local Optuna storage: search specs, pruning, failures, status."""

from __future__ import annotations

import copy
import io
import platform
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import DIVERGES, TINY_SPEC
from mlflow import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

from sweeper import sweep
from sweeper.cli import app
from sweeper.errors import UserError
from sweeper.schema.spec import load_spec, trial_cell
from sweeper.sweep.loop import plan

REPO = Path(__file__).resolve().parents[2]


def search_spec(**search) -> dict:
    spec = copy.deepcopy(TINY_SPEC)
    spec.pop("rows")
    spec["search"] = {
        "sampler": "tpe",
        "seed": 0,
        "n_trials": 4,
        "params": {"optimizer.lr": {"type": "float", "low": 1e-6, "high": 3e-2, "log": True}},
        **search,
    }
    return spec


def cell_runs(store_uri: str) -> list:
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "cell"]


def test_search_section_is_strict_and_points_at_the_line(write_spec):
    assert load_spec(REPO / "experiments" / "search_final_model.yaml").search.sampler == "tpe"
    bad = {
        "low (1.0) must be below high": {"optimizer.lr": {"type": "float", "low": 1.0, "high": 0.1}},
        "log-scale range needs low > 0": {"optimizer.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
        "search.params.optimizer.lr": {
            "optimizer.lr": {"type": "float", "low": 1e-3, "high": 50.0}
        },  # TrainConfig caps lr at 10
        "search.params.optimizer.nme": {"optimizer.nme": {"type": "categorical", "choices": ["sgd"]}},
    }
    for needle, params in bad.items():
        spec = search_spec(params=params)
        with pytest.raises(UserError, match=needle.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")) as err:
            load_spec(write_spec(spec))
        assert "spec.yaml:" in str(err.value)
    grid_float = search_spec(sampler="grid")
    with pytest.raises(UserError, match="grid sampler needs int or categorical"):
        load_spec(write_spec(grid_float))
    with pytest.raises(UserError, match="exactly one of `rows`"):
        load_spec(write_spec({**search_spec(), "rows": TINY_SPEC["rows"]}))
    assert load_spec(write_spec({**search_spec(), "seeds": [0, 1]})).seeds == [0, 1]  # a search over seeds
    with pytest.raises(UserError, match="cannot go the objective's way"):
        load_spec(
            write_spec(search_spec(objective={"metric": "test_loss", "direction": "minimize", "report": "val_acc"}))
        )
    grid = search_spec(
        sampler="grid",
        n_trials=None,
        params={
            "activation": {"type": "categorical", "choices": ["relu", "elu"]},
            "model.hidden": {"type": "int", "low": 8, "high": 24, "step": 8},
        },
    )
    spec = load_spec(write_spec(grid))
    assert spec.search.budget() == 6
    cell = trial_cell(spec, "quick", {"activation": "elu", "model.hidden": 16}, 3)
    assert (cell.config.activation, cell.config.model.hidden, cell.config.epochs, cell.row) == ("elu", 16, 1, 3)


def test_tpe_search_prunes_the_bad_region_and_links_trials_to_runs(write_spec, store_uri, synthetic_data):
    # lr from 1e-6 (learns nothing in 3 epochs) to 3e-2: the median pruner, watching val_acc from
    # epoch 2 on, must stop trials in the flat region once two trials have finished.
    spec = search_spec(
        n_trials=5,
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2},
        params={"optimizer.lr": {"type": "float", "low": 1e-6, "high": 3e-2, "log": True}},
    )
    spec["base"] = {**spec["base"], "epochs": 3}
    path = write_spec(spec)
    report = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=Console(quiet=True))
    assert report.total == 5 and len(report.finished) + len(report.pruned) == 5 and not report.failed
    assert report.pruned, "something in the bad region was pruned"

    sw = sweep.open_sweep(path, tracking_uri=store_uri)
    trials = sw.study.get_trials()
    assert sorted(t.state.name for t in trials) == sorted(
        ["COMPLETE"] * len(report.finished) + ["PRUNED"] * len(report.pruned)
    )
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    for t in trials:
        if t.state.name == "PRUNED":  # pruned at epoch 2 or 3, worse there than the finished trials' median
            step = max(t.intermediate_values)
            assert step >= 2 and t.intermediate_values[step] < max(c.intermediate_values[step] for c in complete)
    runs = {r.info.run_id: r for r in cell_runs(store_uri)}
    assert len(runs) == 5
    for t in trials:
        run = runs[t.user_attrs["sweeper.mlflow_run"]]
        assert run.data.tags["sweeper.study"] == sw.name and run.data.tags["sweeper.trial"] == str(t.number)
        assert float(run.data.params["optimizer.lr"]) == pytest.approx(t.params["optimizer.lr"])
        if t.state.name == "PRUNED":
            assert run.info.status == "KILLED" and "pruned at epoch" in run.data.tags["sweeper.pruned"]
        else:
            assert run.info.status == "FINISHED" and run.data.metrics["best_val_acc"] == pytest.approx(t.value)
    # the budget is spent: a second run trains nothing
    again = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=Console(quiet=True))
    assert again.finished == [] and again.pruned == [] and len(cell_runs(store_uri)) == 5


def test_failed_cells_wait_for_retry_failed_and_status_counts(write_spec, store_uri, synthetic_data):
    rows = [
        DIVERGES,
        {"label": "fine", "epochs": 1},
    ]
    path = write_spec(rows=rows)
    quiet = Console(quiet=True)
    first = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet)
    assert first.failed == ["diverges seed=0"] and first.finished == ["fine seed=0"]
    again = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet)
    assert again.failed == [] and again.finished == [] and again.skipped == 1
    assert len(cell_runs(store_uri)) == 2, "a failed cell is not retried unasked"

    result = CliRunner().invoke(app, ["status", str(path), "--tracking-uri", store_uri])
    assert result.exit_code == 0, result.output
    assert (
        "done 1, running 0, failed 1, pruned 0, left 0" in result.output and "failed: diverges seed=0" in result.output
    )

    retried = sweep.run(
        path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet, retry_failed=True
    )
    assert retried.failed == ["diverges seed=0"] and retried.finished == []
    failed = [r for r in cell_runs(store_uri) if r.data.tags["sweeper.row"] == "diverges"]
    assert [r.info.status for r in failed] == ["FAILED", "FAILED"]
    assert all("FloatingPointError" in r.data.tags["sweeper.error"] for r in failed)
    sw = sweep.open_sweep(path, tracking_uri=store_uri)
    errors = [t.user_attrs.get("sweeper.error", "") for t in sw.study.get_trials() if t.state.name == "FAIL"]
    assert len(errors) == 2 and all("FloatingPointError" in e for e in errors)


def test_mlflow_decides_what_is_finished_even_with_a_fresh_storage(write_spec, store_uri, synthetic_data, tmp_path):
    path = write_spec(rows=[{"label": "ReLU", "activation": "relu", "epochs": 1}])
    quiet = Console(quiet=True)
    sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet)
    other = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    report = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet, storage=other)
    assert report.skipped == 1 and report.finished == [] and len(cell_runs(store_uri)) == 1
    study = optuna.load_study(study_name="tiny/default", storage=other)
    assert study.trials == [], "nothing was even enqueued: the cell is finished in MLflow"


def test_a_cell_whose_run_was_deleted_is_trained_again(write_spec, store_uri, synthetic_data):
    path = write_spec(rows=[{"label": "ReLU", "activation": "relu", "epochs": 1}])
    quiet = Console(quiet=True)
    sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet)
    (first,) = cell_runs(store_uri)
    MlflowClient(store_uri).delete_run(first.info.run_id)  # e.g. deleted in the MLflow UI
    assert sweep.status(path, tracking_uri=store_uri)[0].count("left") == 1, (
        "the study's COMPLETE trial is not the record"
    )
    report = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet)
    (again,) = cell_runs(store_uri)
    assert report.finished == ["ReLU seed=0"] and again.info.run_id != first.info.run_id
    assert again.info.status == "FINISHED"


def test_bad_storage_url_is_a_user_error(write_spec, store_uri, data_dir):
    path = write_spec()
    result = CliRunner().invoke(
        app, ["run", str(path), "--tracking-uri", store_uri, "--storage", "postgresql://u:secret@127.0.0.1:9/db"]
    )
    assert result.exit_code == 2, result.output
    assert "cannot open the sweep storage" in result.output and "secret" not in result.output
    result = CliRunner().invoke(app, ["run", str(path), "--tracking-uri", store_uri, "--devices", "0,x"])
    assert result.exit_code == 2 and "--devices '0,x'" in result.output


def test_a_dead_workers_cell_counts_as_one_to_train(write_spec, store_uri, synthetic_data):
    # A worker killed mid-cell leaves its trial RUNNING until its heartbeat goes stale (3 heartbeats):
    # a run started before then must still count that cell as one to train, and show it in its bar.
    path = write_spec(rows=[{"label": "ReLU", "activation": "relu", "epochs": 1}])
    sw = sweep.open_sweep(path, tracking_uri=store_uri, heartbeat=3)
    plan(sw)
    trial = sw.study.ask()  # the enqueued cell, claimed by a worker that is then killed
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial.set_user_attr("sweeper.worker", f"{platform.node()}:{dead.pid}")
    sw.study._storage.record_heartbeat(trial._trial_id)
    out = io.StringIO()
    report = sweep.run(
        path,
        tracking_uri=store_uri,
        device="cpu",
        data=synthetic_data,
        heartbeat=3,
        console=Console(file=out, width=200),
    )
    assert report.finished == ["ReLU seed=0"]
    assert "tiny: 1 cells to train" in out.getvalue() and "1/1" in out.getvalue(), out.getvalue()


def test_a_second_spec_with_the_same_name_is_refused_until_renamed(tmp_path, store_uri, data_dir, capsys):
    def spec_at(folder: str, rows: list) -> Path:
        path = tmp_path / folder / "spec.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump({**TINY_SPEC, "rows": rows}, sort_keys=False))
        return path

    first = spec_at("a", TINY_SPEC["rows"])
    sweep.open_sweep(first, tracking_uri=store_uri)
    other = spec_at("b", [{"label": "ELU", "activation": "elu"}])
    result = CliRunner().invoke(app, ["run", str(other), "--tracking-uri", store_uri, "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert str(first) in result.output and "its own `name:`" in result.output
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'store' / 'optuna.db'}")] == [
        "tiny/default"
    ]
    first.write_text(first.read_text().replace("GELU", "SiLU").replace("gelu", "silu"))  # edited in place: its own
    sweep.open_sweep(first, tracking_uri=store_uri)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "spec.yaml").write_text(first.read_text())  # the same text elsewhere (a worker's checkout)
    sweep.open_sweep(tmp_path / "copy" / "spec.yaml", tracking_uri=store_uri)
    first.unlink()
    (tmp_path / "copy" / "spec.yaml").unlink()
    sweep.open_sweep(other, tracking_uri=store_uri)  # the old file is gone (moved): the experiment follows
    assert "now belongs to" in capsys.readouterr().err
