"""Reported values, the verdict against the report, the data each run records, and table.md on the sweep run.

Known numbers are logged through the real tracking code into a real sqlite store; goldens
(tests/golden/reported_*.md) pin the rendered deltas and verdict. SWEEPER_UPDATE_GOLDEN=1 rewrites them.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import need
from mlflow import MlflowClient
from rich.console import Console
from scipy import stats
from typer.testing import CliRunner

from sweeper import sweep, tables
from sweeper.cli import app
from sweeper.errors import UserError
from sweeper.runs import cellrun, tracking
from sweeper.schema.spec import expand, load_spec
from sweeper.tables.reported import kendall_tau
from sweeper.vocab import Tag

GOLDEN = Path(__file__).parents[1] / "golden"
REPORTS = Path(__file__).resolve().parents[2].parent / "shared" / "reports"
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
runner = CliRunner()

SPEC = {
    "name": "repro",
    "title": "Reproduction",
    "source": "000_afadcf9be9e3229f.txt section 3",
    "base": {"model": {"name": "resnet_basic"}, "epochs": 30},
    "seeds": [0, 1, 2],
    "rows": [
        {"label": "ReLU", "activation": "relu", "reported": {"test_acc": 0.8720, "final_train_loss": 0.15}},
        {"label": "GELU", "activation": "gelu", "reported": {"test_acc": 0.8716}},
        {"label": "SiLU", "activation": "silu"},  # the report gives no value: left out of the verdict
        {"label": "ELU", "activation": "elu", "reported": {"test_acc": 0.7857}},  # partial: 2 of 3 seeds
        {"label": "Mish", "activation": "mish", "reported": {"test_acc": 0.8558}},
    ],
    "table": {
        "columns": [{"key": "label", "header": "Activation"}],
        "metrics": [
            {"key": "test_acc", "header": "Test Acc. (%)", "format": "percent"},
            {"key": "final_train_loss", "header": "Train Loss", "format": "loss"},
        ],
    },
}
# test_acc per seed (final_train_loss 0.16 everywhere); None: the seed has no run
KNOWN = {
    "ReLU": [0.8910, 0.8930, 0.8890],  # +1.90 points, std 0.20 -> tolerance 1.00: outside
    "GELU": [0.8700, 0.8750, 0.8720],  # +0.40: within
    "SiLU": [0.8600, 0.8610, 0.8590],
    "ELU": [0.7900, 0.7950, None],
    "Mish": [0.8500, 0.8520, 0.8540],  # -0.38: within
}


def assert_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SWEEPER_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from tests/golden/{name}:\n{text}"


def log_known(
    uri: str, path: Path, known: dict, data: dict[str, tuple[str, str]] | None = None, profile: str | None = None
) -> str:
    """Log the known values through cell_run, each run tagged with its (dataset, train size); returns the parent."""
    spec = load_spec(path)
    store = tracking.open_store(uri)
    exp = tracking.experiment_id(store, spec.name)
    parent = tracking.sweep_run(store, exp, spec, profile, path.read_text())
    for cell in expand(spec, profile):
        acc = known[cell.label][cell.seed]
        if acc is None:
            continue
        with cellrun.cell_run(cellrun.SweepRecord(store, exp, parent, spec, profile), cell) as log:
            name, size = (data or {}).get(cell.label, ("CIFAR-10", "45000"))
            log.set_tags({Tag.DATASET: name, Tag.DATASET_DIGEST: "d1g35t", Tag.TRAIN_SIZE: size})
            log.log_summary({"test_acc": acc, "final_train_loss": 0.16})
    tracking.end_run(store, parent)
    return parent


@pytest.fixture
def known(tmp_path, store_uri) -> tuple[str, Path, str]:
    path = tmp_path / "repro.yaml"
    path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return store_uri, path, log_known(store_uri, path, KNOWN)


def test_kendall_tau_matches_scipy_on_orders_with_and_without_ties() -> None:
    cases = [
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
        ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
        ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]),
        ([0.87, 0.88, 0.86, 0.79], [0.8720, 0.8739, 0.8590, 0.7857]),
        ([1, 1, 2, 3], [1, 2, 2, 3]),  # ties on both sides: tau-b
        ([3, 1, 2, 2, 5, 4], [1, 1, 2, 3, 3, 6]),
    ]
    for x, y in cases:
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12), (x, y)
    assert math.isnan(kendall_tau([1.0], [2.0])) and math.isnan(kendall_tau([1, 1], [1, 2]))


def test_reported_values_render_deltas_and_the_verdict(known) -> None:
    uri, path, _ = known
    inline = tables.build(str(path), tracking_uri=uri)
    assert_golden(tables.render(inline, "markdown"), "reported_inline.md")
    column = tables.build(str(path), tracking_uri=uri, reported="column")
    assert_golden(tables.render(column, "markdown"), "reported_column.md")
    off = tables.render(tables.build(str(path), tracking_uri=uri, reported="off"), "markdown")
    assert "rep." not in off and "Against the report" not in off
    # the numbers the goldens show, from the runs
    relu = re.search(r"\| ReLU \| (.*?) \|", tables.render(inline)).group(1)  # type: ignore[union-attr]
    assert relu == "**89.10 ± 0.20 (rep. 87.20, +1.90)**"
    verdict = next(n for n in inline.notes if n.startswith("Against the report (Test Acc. (%))"))
    assert "2 of 3 rows within tolerance" in verdict and "outside: ReLU (+1.90" in verdict
    assert "partial, not judged: ELU" in verdict and "no reported value: SiLU" in verdict


def test_a_smoke_profile_shows_the_report_beside_ours_without_a_verdict_and_what_the_full_run_costs(
    tmp_path, store_uri
) -> None:
    path = tmp_path / "repro.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "profiles": {"quick": {"smoke": True, "epochs": 2}}}, sort_keys=False))
    log_known(store_uri, path, KNOWN, profile="quick")
    cost = "7 cells x 30 epochs, 9.43M training images -> GPU 13 min"
    smoke = tables.build(str(path), "quick", store_uri, full_cost=cost)
    text = tables.render(smoke)
    assert "(rep. 87.20, +1.90)" in text, "the report's values stand beside ours"
    assert "Against the report" not in text and "within tolerance" not in text, "no verdict on a smoke test"
    assert (
        "Smoke test (profile quick)" in text
        and f"The full run (the spec's own settings, no --profile): {cost}." in text
    )
    assert "rep.: the report's printed value" in text
    # the sweep run keeps the cost, so the next `sweeper table` (which imports no torch) still says it
    assert tables.publish(smoke, store_uri)
    assert f": {cost}." in tables.render(tables.build(str(path), "quick", store_uri))


def test_out_of_tolerance_rows_fail_check_reported_and_a_floor_lets_them_pass(known, tmp_path) -> None:
    uri, path, _ = known
    failed = runner.invoke(app, ["table", str(path), "--tracking-uri", uri, "--check-reported"])
    assert failed.exit_code == 1, failed.output
    assert "ReLU: test_acc +1.90 (tolerance 1)" in failed.output
    loose = {**SPEC, "table": {**SPEC["table"], "tolerance": {"test_acc": 2.0, "final_train_loss": 0.02}}}
    path.write_text(yaml.safe_dump(loose, sort_keys=False))  # same rows, same cell ids: the same runs
    passed = runner.invoke(app, ["table", str(path), "--tracking-uri", uri, "--check-reported"])
    assert passed.exit_code == 0, passed.output
    assert "3 of 3 rows within tolerance" in passed.output


def test_reported_values_do_not_change_cell_ids_and_must_name_table_metrics(tmp_path) -> None:
    plain = {**SPEC, "rows": [{k: v for k, v in r.items() if k != "reported"} for r in SPEC["rows"]]}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(SPEC))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(plain))
    ids = [[c.id for c in expand(load_spec(tmp_path / n))] for n in ("a.yaml", "b.yaml")]
    assert ids[0] == ids[1]
    bad = {**SPEC, "rows": [{"label": "x", "reported": {"val_acc": 0.9}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(UserError, match="reported 'val_acc' is not one of the table's metrics"):
        load_spec(tmp_path / "c.yaml")


def test_a_table_mixing_datasets_says_so_per_row_and_one_dataset_is_named(tmp_path, store_uri) -> None:
    path = tmp_path / "repro.yaml"
    path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    log_known(store_uri, path, KNOWN, data={"GELU": ("CIFAR-10 (JPEG)", "45000"), "Mish": ("synthetic", "600")})
    notes = tables.build(str(path), tracking_uri=store_uri).notes
    mixed = next(n for n in notes if n.startswith("Rows trained on different data"))
    assert "ReLU: CIFAR-10, 45,000 training images" in mixed
    assert "GELU: CIFAR-10 (JPEG), 45,000 training images" in mixed and "Mish: synthetic, 600" in mixed


def test_one_dataset_is_named_with_its_training_size(known) -> None:
    uri, path, _ = known
    notes = tables.build(str(path), tracking_uri=uri).notes
    assert "Data: CIFAR-10, 45,000 training images, digest d1g35t." in notes
    assert not any(n.startswith("Rows trained on different data") for n in notes)


def test_both_readers_give_the_same_table_with_reported_values_and_data(known, monkeypatch) -> None:
    uri, path, _ = known
    fast = tables.render(tables.build(str(path), tracking_uri=uri))
    monkeypatch.setenv("SWEEPER_TABLE_READER", "mlflow")
    assert tables.render(tables.build(str(path), tracking_uri=uri)) == fast


def test_sweeper_table_logs_table_md_to_the_sweep_run_only_when_it_changed(known) -> None:
    uri, path, parent = known
    assert runner.invoke(app, ["table", str(path), "--tracking-uri", uri]).exit_code == 0
    client = MlflowClient(uri)
    run = client.get_run(parent)
    local = Path(run.info.artifact_uri.removeprefix("file://")) / tables.TABLE_MD
    logged = local.read_text()
    assert logged == tables.render(tables.build(str(path), tracking_uri=uri))
    # written in place (no MLflow import on a local store), it is an artifact of the run as MLflow sees it
    assert tables.TABLE_MD in [a.path for a in client.list_artifacts(parent)]
    assert client.download_artifacts(parent, tables.TABLE_MD) and local.read_text() == logged
    stamp = local.stat().st_mtime_ns
    assert runner.invoke(app, ["table", str(path), "--tracking-uri", uri]).exit_code == 0
    assert local.stat().st_mtime_ns == stamp  # unchanged table: not logged again
    assert runner.invoke(app, ["table", str(path), "--tracking-uri", uri, "--reported", "column"]).exit_code == 0
    assert "reported" in local.read_text() and local.read_text() != logged


def test_a_cell_run_records_its_dataset_as_an_mlflow_input(write_spec, store_uri, synthetic_data) -> None:
    path = write_spec()
    sweep.run(path, "quick", tracking_uri=store_uri, device="cpu", data=synthetic_data, console=Console(quiet=True))
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name(load_spec(path).name)
    cells = client.search_runs([exp.experiment_id], f"tags.`{Tag.ROLE}` = 'cell'")
    assert cells
    for run in cells:
        (given,) = run.inputs.dataset_inputs
        assert given.dataset.name == "synthetic" and len(given.dataset.digest) == 16
        sizes = json.loads(given.dataset.profile)
        assert (sizes["train"], sizes["val"], sizes["test"]) == (300, 50, 100)  # the spec's data sizes, not the pool's
        assert run.data.tags[Tag.DATASET] == "synthetic" and run.data.tags[Tag.TRAIN_SIZE] == str(sizes["train"])
        assert run.data.tags[Tag.DATASET_DIGEST] == given.dataset.digest
    notes = tables.build(load_spec(path).name, "quick", tracking_uri=store_uri).notes
    assert any(n.startswith("Data: synthetic, ") for n in notes)


# --- the specs' reported numbers against their reports ---------------------------------------


def printed(value: float, fmt: str) -> str:
    """A reported number as its report prints it: percent metrics in points, the fewest decimals that
    state the YAML value exactly (0.8720 -> '87.2', matched in the text as 87.2, 87.20, ...)."""
    shown = round(value * (100 if fmt == "percent" else 1), 10)
    return f"{shown:.10f}".rstrip("0").rstrip(".")


def appears(number: str, text: str) -> bool:
    """The number stands in the text as a number of its own (trailing zeros allowed, no longer number around it)."""
    return re.search(rf"(?<![\d.]){re.escape(number)}{'0*' if '.' in number else ''}(?![\d])", text) is not None


def spec_files() -> list[Path]:
    return sorted(EXPERIMENTS.glob("*.yaml"))


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
def test_every_reported_number_appears_in_the_report_the_spec_names(path: Path) -> None:
    spec = load_spec(path)
    reported = spec.reported()
    if not reported:
        return  # bn_landscape_000 (figures only), fast (issue 8), search_final_model (a search): no numbers
    need(REPORTS.is_dir(), f"{REPORTS} is missing (the course reports the specs quote)")
    report = REPORTS / spec.source.split()[0]
    assert report.is_file(), f"{path.name}: source '{spec.source}' names no report file in {REPORTS}"
    text = report.read_text()
    formats = {m.key: m.format for m in spec.table.metrics}
    for label, values in reported.items():
        for key, value in values.items():
            number = printed(value, formats[key])
            assert appears(number, text), f"{path.name} row '{label}': {key} {value} ({number}) not in {report.name}"


def test_every_row_of_a_spec_with_a_report_table_carries_its_numbers() -> None:
    without = {"bn_landscape_000", "fast", "search_final_model"}  # the reports print no table for these
    for path in spec_files():
        spec = load_spec(path)
        if path.stem not in without:
            assert len(spec.reported()) == len(spec.rows or []), path.name


def test_printed_numbers_match_only_whole_numbers() -> None:
    assert printed(0.8235, "percent") == "82.35" and printed(0.872, "percent") == "87.2"
    assert appears("87.2", "ReLU\t87.20\n") and not appears("87.2", "87.25") and not appears("2.35", "82.35")
    assert printed(0.15, "loss") == "0.15" and appears("0.15", "loss ≈ 0.15).")
