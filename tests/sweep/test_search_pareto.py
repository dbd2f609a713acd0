"""Two objectives: a multi-objective study whose answer, table and figure are its Pareto front; a search may
choose among lists (a network's widths)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SPEC
from typer.testing import CliRunner

from sweeper import sweep, tables
from sweeper.cli import app
from sweeper.errors import UserError
from sweeper.schema.spec import load_spec
from sweeper.sweep.figures import search_figures

REPO = Path(__file__).resolve().parents[2]


def pareto_spec(**search) -> dict:
    spec = copy.deepcopy(TINY_SPEC)
    spec.pop("rows")
    spec["base"]["epochs"] = 1
    spec["base"]["data"] = {**spec["base"]["data"], "train_size": 96, "val_size": 20, "test_size": 40}
    spec["search"] = {
        "sampler": "grid",
        "seed": 0,
        "params": {"model.widths": {"type": "categorical", "choices": [[8, 8], [16, 32], [32, 32]]}},
        "objective": [{"metric": "test_acc", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}],
        **search,
    }
    spec["table"]["metrics"].append({"key": "params", "header": "Parameters", "format": "params", "best": "min"})
    return spec


def test_two_objectives_give_a_pareto_front_in_the_answer_the_table_and_the_figure(
    write_spec, store_uri, data_dir, tmp_path
):
    path = write_spec(pareto_spec())
    result = CliRunner().invoke(app, ["run", str(path), "--tracking-uri", store_uri, "--device", "cpu"])
    assert result.exit_code == 0, result.output

    sw = sweep.open_sweep(path, tracking_uri=store_uri)
    assert len(sw.study.directions) == 2 and len(sw.study.trials) == 3
    front_runs = {t.user_attrs["sweeper.mlflow_run"] for t in sw.study.best_trials}
    smallest = min(sw.study.trials, key=lambda t: t.values[1])
    assert smallest.user_attrs["sweeper.mlflow_run"] in front_runs  # the fewest parameters is never dominated
    assert f"Pareto front of study {sw.name}" in result.stdout
    entries = [yaml.safe_load(line.strip())[0] for line in result.stdout.splitlines() if line.strip().startswith("- {")]
    assert len(entries) == len(front_runs) and all(isinstance(e["model.widths"], list) for e in entries)

    table = tables.build(str(path), tracking_uri=store_uri)
    marked = {ids[0] for keys, ids in zip(table.keys, table.run_ids) if keys[0].startswith("◆")}
    assert marked == front_runs
    assert all(k[0].startswith("◆") for k in table.keys[: len(front_runs)])  # the front first
    assert any("Pareto front (test_acc up, params down)" in n for n in table.notes)

    figures = search_figures(str(path), None, tmp_path / "figs", store_uri, png=False)
    assert [title for title, _ in figures][0] == "Pareto front"
    assert (tmp_path / "figs" / "tiny-default-pareto.html").is_file()


def test_several_objectives_are_checked_and_the_worked_spec_validates(write_spec):
    spec = load_spec(REPO / "experiments" / "filters_pareto.yaml")
    assert spec.search.metrics() == ["test_acc", "params"] and "quick" in spec.profiles
    with pytest.raises(UserError, match="prunes single-objective searches only"):
        load_spec(write_spec(pareto_spec(pruner={"name": "median"})))
    with pytest.raises(UserError, match="different metrics"):
        load_spec(write_spec(pareto_spec(objective=[{"metric": "test_acc"}, {"metric": "test_acc"}])))
