"""End to end: a 2-cell sweep into a real sqlite MLflow store, re-run, and the table read back."""

from __future__ import annotations

from mlflow import MlflowClient
from rich.console import Console

from sweeper import sweep, tables
from sweeper.schema.spec import expand, load_spec


def quiet() -> Console:
    return Console(quiet=True)


def test_sweep_logs_parent_children_params_metrics_and_config(write_spec, store_uri, synthetic_data):
    path = write_spec(seeds=[0, 1])
    report = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet())
    assert report.total == 4 and len(report.finished) == 4 and not report.failed

    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "cell"]
    assert len(parents) == 1 and len(children) == 4
    assert parents[0].info.status == "FINISHED"
    cells = {c.id: c for c in expand(load_spec(path))}
    for run in children:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parents[0].info.run_id
        cell = cells[tags["sweeper.cell"]]
        assert tags["sweeper.row"] == cell.label and tags["sweeper.seed"] == str(cell.seed)
        assert params["activation"] == cell.config.activation and params["optimizer.lr"] == "0.003"
        assert params["model.name"] == "plain_cnn" and params["label"] == cell.label
        assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["params"] > 0
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2]
        for key in ("train_loss", "train_acc", "val_loss", "lr", "epoch_time", "images_per_s"):
            assert len(client.get_metric_history(run.info.run_id, key)) == 2, key
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert "config.yaml" in artifacts
    assert "spec.yaml" in [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    # the synthetic set is learnable: a real training loop beats chance
    assert min(r.data.metrics["test_acc"] for r in children) > 0.3


def test_rerun_trains_nothing_and_changed_cells_train(write_spec, store_uri, synthetic_data):
    path = write_spec()
    first = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet())
    again = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet())
    assert len(first.finished) == 2
    assert again.skipped == 2 and again.finished == []
    rows = [*load_spec(path).rows, {"label": "ELU", "activation": "elu"}]
    grown = sweep.run(write_spec(rows=rows), tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet())
    assert grown.skipped == 2 and grown.finished == ["ELU seed=0"]
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    cells = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "cell"]
    assert len(cells) == 3, "no cell was trained twice"


def test_a_failing_cell_is_marked_failed_and_the_sweep_goes_on(write_spec, store_uri, synthetic_data):
    # lr 10 with SGD diverges to a non-finite loss; the other row must still finish
    rows = [
        {
            "label": "diverges",
            "optimizer.name": "sgd",
            "optimizer.lr": 10.0,
            "optimizer.momentum": 0.99,
            "model.name": "plain_cnn",
            "loss.penalty": "l2",
            "loss.penalty_weight": 10.0,
        },
        {"label": "fine"},
    ]
    report = sweep.run(
        write_spec(rows=rows), tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet()
    )
    assert report.failed == ["diverges seed=0"] and report.finished == ["fine seed=0"]
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    failed = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.row") == "diverges"]
    assert failed[0].info.status == "FAILED" and "FloatingPointError" in failed[0].data.tags["sweeper.error"]
    table = tables.render(tables.build("tiny", tracking_uri=store_uri))
    assert "| diverges | failed |" in table


def test_table_from_mlflow_alone(write_spec, store_uri, synthetic_data, tmp_path):
    path = write_spec(seeds=[0, 1])
    sweep.run(path, "quick", tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet())
    path.unlink()  # the table must come from the tracked runs, not the YAML
    table = tables.build("tiny", tracking_uri=store_uri)
    assert table.headers == ["Activation Function", "Test Accuracy (%)"]
    assert [k[0] for k in table.keys] == ["ReLU", "GELU"], "rows in spec order"
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    relu = [r.data.metrics["test_acc"] for r in client.search_runs([exp.experiment_id], "tags.`sweeper.row` = 'ReLU'")]
    assert sorted(table.values[0][0].values) == sorted(relu) and len(relu) == 2
    text = tables.render(table)
    lines = text.splitlines()
    assert lines[0] == "| Activation Function | Test Accuracy (%) |"
    mean = 100 * sum(relu) / 2
    assert f"{mean:.2f} ± " in lines[2] and lines[2].startswith("| ReLU |")
    assert "profile: quick" in text
    csv_text = tables.render(table, "csv")
    assert csv_text.splitlines()[0] == "Activation Function,Test Accuracy (%)"


def test_table_marks_missing_seeds_and_missing_rows(write_spec, store_uri, synthetic_data):
    path = write_spec()
    sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet())
    more = write_spec(
        seeds=[0, 1], rows=[*load_spec(path).rows, {"label": "Mish", "activation": "mish"}], name="more.yaml"
    )
    text = tables.render(tables.build(str(more), tracking_uri=store_uri))
    assert "(n=1/2)" in text
    assert "| Mish | missing |" in text


def test_a_profile_that_adds_seeds_counts_the_cells_another_profile_finished(write_spec, store_uri, synthetic_data):
    # A cell is its config's id: seed 0 of `more` is seed 0 of the default profile, finished once, counted in both.
    path = write_spec(rows=[{"label": "ReLU", "activation": "relu"}], profiles={"more": {"seeds": [0, 1]}})
    sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet())
    more = sweep.run(path, "more", tracking_uri=store_uri, device="cpu", data=synthetic_data, console=quiet())
    assert more.finished == ["ReLU seed=1"] and more.skipped == 1
    snap, _ = sweep.status(path, "more", tracking_uri=store_uri)
    assert (snap.count("done"), snap.count("left")) == (2, 0)
    for name in ("tiny", str(path)):
        table = tables.build(name, "more", tracking_uri=store_uri)
        assert [len(ids) for ids in table.run_ids] == [2], name
        assert "missing" not in tables.render(table)
    default = tables.build("tiny", "default", tracking_uri=store_uri)
    assert [len(ids) for ids in default.run_ids] == [1], "the default profile still has only its own seed"
