"""The sweep's parent run as its summary page, and the links sweeper prints into the MLflow UI.

A real sweep on synthetic data, against a real sqlite store: the corridor refreshes the parent run
after each cell; its Description (markdown, rendered here as a viewer would) holds the table with
labels that are markup, its metrics are the table's means, its parameters the shared settings.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import TINY_SPEC
from helpers import TableText
from markdown_it import MarkdownIt
from mlflow import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

from sweeper import sweep, tables
from sweeper.cli import app
from sweeper.runs.server import ui_url
from sweeper.tables import summary

runner = CliRunner()
EVIL = ["<script>alert(1)</script>", "A | B\nC"]


def evil_spec() -> dict:
    spec = copy.deepcopy(TINY_SPEC)
    spec["title"] = "Tiny <b>activations</b>"
    spec["source"] = "report 000, section 3"
    spec["base"]["epochs"] = 1
    spec["base"]["data"] |= {"train_size": 64, "val_size": 20, "test_size": 20}
    spec["rows"] = [{"label": EVIL[0], "activation": "relu"}, {"label": EVIL[1], "activation": "gelu"}]
    return spec


@pytest.fixture(scope="module")
def swept(tmp_path_factory, synthetic_data) -> dict:
    tmp = tmp_path_factory.mktemp("summary")
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(evil_spec(), sort_keys=False))
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SWEEPER_PNG", "0")  # as conftest sets it per test: no browser for the figure's PNG
        report = sweep.run(path, tracking_uri=uri, device="cpu", data=synthetic_data, console=Console(quiet=True))
    assert len(report.finished) == 2
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    parent = client.search_runs([exp.experiment_id], "tags.`sweeper.role` = 'sweep'")[0]
    return {"uri": uri, "path": path, "client": client, "exp": exp, "parent": parent}


def test_the_experiment_is_model_training_and_says_what_it_is(swept):
    tags = swept["exp"].tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == "Tiny &lt;b>activations&lt;/b>\n\nSource: report 000, section 3"


def test_the_parent_runs_description_is_the_table_with_labels_as_text(swept):
    note = swept["parent"].data.tags["mlflow.note.content"]
    table = tables.build(str(swept["path"]), tracking_uri=swept["uri"])
    grid, _, notes = tables.render(table).partition("\n\n")
    assert grid in note and all(f"- {line}" in note for line in notes.splitlines()), "the table with its notes"
    rendered = MarkdownIt("commonmark").enable("table").render(note)
    assert "<script" not in rendered and "<b>" not in rendered
    rows = TableText.of(rendered)
    assert [r[0] for r in rows] == ["Activation Function", *EVIL]
    assert all(len(r) == 2 for r in rows)


def test_the_parent_runs_metrics_are_the_tables_means_and_params_the_shared_settings(swept):
    data = swept["parent"].data
    table = tables.build(str(swept["path"]), tracking_uri=swept["uri"])
    means = {
        f"test_acc/{label}": row[0].mean for label, row in zip(["_script_alert_1___script_", "A _ B_C"], table.values)
    }
    assert dict(data.metrics) == pytest.approx(means, abs=1e-6)
    assert data.params["optimizer.lr"] == "0.003" and data.params["epochs"] == "1"
    assert "activation" not in data.params, "only what every row shares"
    figures = [a.path for a in swept["client"].list_artifacts(swept["parent"].info.run_id, "figures")]
    assert figures == ["figures/comparison_val_acc.html"], "redrawn with the table, under one name"


def test_publish_refreshes_only_a_changed_table(swept):
    table = tables.build(str(swept["path"]), tracking_uri=swept["uri"])
    assert not tables.publish(table, swept["uri"]), "the corridor left it current"
    table.logged = "an older description"
    assert tables.publish(table, swept["uri"])


def test_every_link_opens_the_experiment_in_the_model_training_view(swept, monkeypatch):
    want = f"http://127.0.0.1:5000/#/experiments/{swept['exp'].experiment_id}?workflowType=machine_learning"
    assert ui_url("http://127.0.0.1:5000/", swept["exp"].experiment_id) == want
    assert summary.ui_link("tiny", swept["uri"]) == f"MLflow: {want} (after `sweeper server`)"
    status = runner.invoke(app, ["status", str(swept["path"]), "--tracking-uri", swept["uri"]])
    assert status.exit_code == 0 and want in status.output, status.output
    report = runner.invoke(
        app, ["report", "--out", str(swept["path"].parent / "r"), "--tracking-uri", swept["uri"], "--no-figures"]
    )
    assert report.exit_code == 0 and f"tiny: {want}" in report.output, report.output
