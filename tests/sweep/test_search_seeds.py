"""A search over seeds: each trial trains once per seed (one trial group), its value is their mean, the
table shows mean ± std per trial, and the pruner is shown the mean so far."""

from __future__ import annotations

import copy
import statistics

import pytest
from conftest import TINY_SPEC
from mlflow import MlflowClient
from rich.console import Console

from sweeper import sweep, tables
from sweeper.schema.spec import load_spec, trial_cell
from sweeper.sweep.seeds import Curves


def test_a_search_over_seeds_trains_each_trial_per_seed_and_returns_their_mean(write_spec, store_uri, synthetic_data):
    spec = copy.deepcopy(TINY_SPEC)
    spec.pop("rows")
    spec["seeds"] = [0, 1]
    spec["base"]["epochs"] = 1
    spec["base"]["data"] = {**spec["base"]["data"], "train_size": 96, "val_size": 20, "test_size": 40}
    spec["search"] = {
        "sampler": "grid",
        "seed": 0,
        "params": {"optimizer.lr": {"type": "categorical", "choices": [0.01, 0.001]}},
    }
    path = write_spec(spec)
    report = sweep.run(path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=Console(quiet=True))
    assert len(report.finished) == 2 and not report.failed

    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "cell"]
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    sw = sweep.open_sweep(path, tracking_uri=store_uri)
    for trial in sw.study.get_trials():
        group = [r for r in runs if r.data.tags["sweeper.trial"] == str(trial.number)]
        assert sorted(r.data.tags["sweeper.seed"] for r in group) == ["0", "1"]
        assert trial.value == pytest.approx(statistics.fmean(r.data.metrics["best_val_acc"] for r in group))
        # the pruner saw seed 0's epoch 1 at step 1, then the mean of both seeds' epoch 1 at step 2
        val = {r.data.tags["sweeper.seed"]: client.get_metric_history(r.info.run_id, "val_acc")[0].value for r in group}
        assert trial.intermediate_values[1] == pytest.approx(val["0"])
        assert trial.intermediate_values[2] == pytest.approx((val["0"] + val["1"]) / 2)
    # seed 0's cell keeps the id a single-seed search gives it
    loaded = load_spec(path)
    first = trial_cell(loaded, None, {"optimizer.lr": 0.01}, 0)
    assert first.id in {r.data.tags["sweeper.cell"] for r in runs}

    table = tables.build(str(path), tracking_uri=store_uri)
    assert len(table.values) == 2 and all(v[0].expected == 2 and len(v[0].values) == 2 for v in table.values)
    assert " ± " in tables.render(table, "markdown")


def test_the_pruner_is_shown_the_mean_so_far():
    cells = [trial_cell(load_spec_like(), None, {"optimizer.lr": 0.01}, 0, seed=s) for s in (0, 1, 2)]
    curves = Curves(cells)  # 2 epochs a seed
    assert curves.step(0, 1, 0.2) == (1, 0.2) and curves.step(0, 2, 0.4) == (2, 0.4)
    assert curves.step(1, 1, 0.4) == (3, pytest.approx(0.3))
    curves.record(1, [(2, 0.6)])
    assert curves.step(2, 2, 0.8) == (6, pytest.approx((0.4 + 0.6 + 0.8) / 3))


def load_spec_like():
    from sweeper.schema.spec import Spec

    spec = copy.deepcopy(TINY_SPEC)
    spec.pop("rows")
    spec["seeds"] = [0, 1, 2]
    spec["search"] = {
        "sampler": "random",
        "n_trials": 1,
        "params": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1}},
    }
    return Spec.model_validate(spec)
