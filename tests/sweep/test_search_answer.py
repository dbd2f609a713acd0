"""A search ends with an answer: the best trial printed and on the parent run, pruned trials' values in
the table, the study's figures, and the study named by `status` (real store, real Optuna storage)."""

from __future__ import annotations

import copy

import optuna
import pytest
import yaml
from conftest import TINY_SPEC
from mlflow import MlflowClient
from typer.testing import CliRunner

from sweeper import sweep, tables
from sweeper.cli import app
from sweeper.schema.spec import load_spec


def search_spec() -> dict:
    # The grid sampler with seed 5 visits lr 0.01, 0.003, then 1e-9 (learns nothing): after trial 0 completes,
    # the median pruner (one startup trial, no warm-up) stops the 1e-9 trial at epoch 1, below trial 0 there.
    spec = copy.deepcopy(TINY_SPEC)
    spec.pop("rows")
    spec["search"] = {
        "sampler": "grid",
        "seed": 5,
        "params": {"optimizer.lr": {"type": "categorical", "choices": [0.01, 0.003, 1e-9]}},
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    }
    spec["table"] = {
        "columns": [{"key": "optimizer.lr", "header": "lr", "format": "sci"}],
        "metrics": [{"key": "best_val_acc", "header": "Val (%)", "format": "percent"}],
    }
    return spec


def test_a_search_ends_with_its_best_trial_printed_logged_and_first_in_the_table(write_spec, store_uri, data_dir):
    path = write_spec(search_spec())
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path), "--tracking-uri", store_uri, "--device", "cpu"])
    assert result.exit_code == 0, result.output

    sw = sweep.open_sweep(path, tracking_uri=store_uri)
    trials = sw.study.get_trials()
    best = sw.study.best_trial
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials), "a trial in the flat region is pruned"
    out = result.stdout
    assert f"best trial of study {sw.name}" in out and f"trial {best.number}: best_val_acc {best.value:.4g}" in out
    assert best.user_attrs["sweeper.mlflow_run"] in out
    # the rows: entry is pasted into a spec as is
    entry = next(line for line in out.splitlines() if line.strip().startswith("- {label:"))
    fixed = {**search_spec(), "rows": yaml.safe_load(entry.strip())}
    fixed.pop("search")
    row = load_spec(write_spec(fixed, name="fixed.yaml")).rows[0]
    assert row["optimizer.lr"] == best.params["optimizer.lr"] and row["label"] == f"trial {best.number}"

    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    parent = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "sweep")
    assert parent.data.metrics["best.value"] == pytest.approx(best.value)
    assert parent.data.metrics["best.trial"] == best.number
    assert float(parent.data.params["best.optimizer.lr"]) == best.params["optimizer.lr"]

    table = tables.build(str(path), tracking_uri=store_uri)
    assert table.run_ids[0] == [best.user_attrs["sweeper.mlflow_run"]]
    pruned = [v[0].status for v in table.values if v[0].status.startswith("pruned")]
    assert pruned and all(s.startswith("pruned at epoch 1 (val_acc ") for s in pruned)
    assert "pruned at epoch 1 (val_acc" in tables.render(table, "markdown")

    status = runner.invoke(app, ["status", str(path), "--tracking-uri", store_uri])
    assert status.exit_code == 0, status.output
    assert f"study {sw.name} in sqlite:///" in status.stdout.splitlines()[0]

    # Optuna's own figures beside the comparison figure, on the parent run, and linked from the report
    out = path.parent / "results"
    plotted = runner.invoke(
        app, ["plot", str(path), "--tracking-uri", store_uri, "--out", str(out / "cmp.html"), "--no-png"]
    )
    assert plotted.exit_code == 0, plotted.output
    for key in ("history", "importances", "parallel", "curves"):
        assert (out / f"tiny-default-{key}.html").is_file(), key
    curves = (out / "tiny-default-curves.html").read_text()
    assert curves.count('"mode":"lines+markers"') == len(trials)  # every trial's curve, the pruned ones too
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/tiny-default-history.html" in logged
    reported = runner.invoke(app, ["report", "--out", str(out), "--tracking-uri", store_uri, "--no-png"])
    assert reported.exit_code == 0, reported.output
    text = (out / "report.md").read_text()
    assert "## Searches" in text and "(figures/tiny-default-importances.html)" in text
