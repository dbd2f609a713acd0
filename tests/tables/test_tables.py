"""Tables, comparison figures and the report, read back from real sqlite MLflow stores.

Golden files (tests/golden/) pin the exact text of each format. Training numbers vary by platform,
so the exact goldens come from runs logged with known values through the real tracking code
(`cellrun.cell_run`, as a sweep logs them); a real sweep on synthetic data is compared against
goldens with its numbers masked, and its numbers against the runs. Set SWEEPER_UPDATE_GOLDEN=1 to
rewrite the golden files after a deliberate change, then review the diff.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import unittest.mock
from pathlib import Path

import pytest
import yaml
from conftest import DIVERGES
from mlflow import MlflowClient
from rich.console import Console
from scipy import stats
from typer.testing import CliRunner

from sweeper import sweep, tables
from sweeper.cli import app
from sweeper.errors import Pruned, UserError
from sweeper.runs import cellrun, system, tracking
from sweeper.schema.spec import expand, load_spec, trial_cell
from sweeper.schema.table import Metric
from sweeper.tables import compare

GOLDEN = Path(__file__).parents[1] / "golden"
runner = CliRunner()

R18, D201 = {"name": "resnet18"}, {"name": "densenet201"}
TABLE3 = {
    "name": "table3",
    "title": "Settings and results (report 002, Table 3 layout)",
    "source": "002_3c2a07784435b1f0.txt Table 3",
    "base": {
        "model": R18,
        "data": {"augment": "weak", "batch_size": 256},
        "optimizer": {"name": "adam", "lr": 1.0e-3},
        "scheduler": {"name": "cosine"},
        "epochs": 50,
    },
    "seeds": [0, 1, 2],
    "rows": [
        {"label": "r18-relu"},
        {"label": "r18-gelu", "activation": "gelu"},
        {"label": "d201-strong", "model": D201, "epochs": 200, "data.augment": "strong"},
        {"label": "d201-l1", "model": D201, "epochs": 200, "loss.penalty": "l1"},
        {"label": "d201-sgd", "model": D201, "epochs": 200, "optimizer.name": "sgd"},
        {"label": "d201-l2", "model": D201, "epochs": 200, "loss.penalty": "l2", "loss.penalty_weight": 5.0e-4},
        {"label": "d201-gelu", "model": D201, "epochs": 200, "activation": "gelu"},
    ],
    "table": {
        "columns": [
            {"key": "row", "header": "#"},
            {"key": "model.name", "header": "Model", "show": {"resnet18": "ResNet-18", "densenet201": "DenseNet-201"}},
            {"key": "metrics.params", "header": "Size", "format": "params"},
            {"key": "activation", "header": "Activation", "show": {"relu": "ReLU", "gelu": "GELU"}},
            {"key": "model.dropout", "header": "Dropout"},
            {
                "key": "loss.penalty",
                "header": "Regularization",
                "show": {"none": "None", "l1": "L1, {loss.penalty_weight:sci}", "l2": "L2, {loss.penalty_weight:sci}"},
            },
            {"key": "optimizer.name", "header": "Optimizer", "show": {"adam": "Adam", "sgd": "SGD"}},
            {"key": "optimizer.lr", "header": "LR", "format": "sci"},
            {"key": "data.batch_size", "header": "Batch Size"},
            {"key": "epochs", "header": "Epochs"},
            {"key": "data.augment", "header": "Augment"},
        ],
        "metrics": [
            {"key": "train_loss", "header": "Train. Loss", "format": "loss", "mark": "star"},
            {"key": "val_loss", "header": "Val. Loss", "format": "loss", "mark": "star"},
            {"key": "train_acc", "header": "Train. Acc. (%)", "format": "percent", "mark": "star"},
            {"key": "best_val_acc", "header": "Val. Acc. (%)", "format": "percent", "mark": "star"},
        ],
    },
}
# (train_loss, val_loss, train_acc, best_val_acc) per seed; rows 1-2 overlap in train_acc only
KNOWN3 = {
    "r18-relu": [(0.0099, 0.3709, 0.9969, 0.9264), (0.0101, 0.3650, 0.9985, 0.9250), (0.0097, 0.3770, 0.9960, 0.9281)],
    "r18-gelu": [(0.0072, 0.3742, 0.9979, 0.9335), (0.0075, 0.3701, 0.9970, 0.9310), (0.0070, 0.3790, 0.9981, 0.9342)],
    "d201-strong": [
        (0.0720, 0.2340, 0.9750, 0.9499),
        (0.0711, 0.2301, 0.9744, 0.9503),
        (0.0733, 0.2388, 0.9761, 0.9490),
    ],
    "d201-l1": [(0.5837, 0.2882, 0.8810, 0.9105), (0.5790, 0.2850, 0.8822, 0.9130), "failed"],
    "d201-sgd": ["failed", "failed", "failed"],
    "d201-l2": ["pruned", "pruned", "running"],
    "d201-gelu": [None, None, None],
}
PARAMS = {"resnet18": 11_173_962, "densenet201": 10_289_282}

ACTS = {  # report 000, section 3: one seed per row, sorted best-first as the report lists them
    "name": "acts",
    "title": "Activation Functions",
    "source": "000_afadcf9be9e3229f.txt section 3",
    "base": {"model": {"name": "resnet_basic"}, "epochs": 30},
    "seeds": [0],
    "rows": [
        {"label": label, "activation": act}
        for label, act in [
            ("ReLU", "relu"),
            ("Leaky ReLU", "leaky_relu"),
            ("GELU", "gelu"),
            ("SiLU", "silu"),
            ("Mish", "mish"),
            ("PReLU", "prelu"),
            ("ELU", "elu"),
        ]
    ],
    "table": {
        "columns": [{"key": "label", "header": "Activation Function"}],
        "metrics": [{"key": "test_acc", "header": "Test Accuracy (%)", "format": "percent"}],
        "sort": "test_acc",
    },
}
KNOWN_ACTS = {"ReLU": 0.8720, "Leaky ReLU": 0.8739, "GELU": 0.8716, "SiLU": 0.8590, "Mish": 0.8558, "PReLU": 0.8504}


def assert_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SWEEPER_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from tests/golden/{name}:\n{text}"


def write(tmp: Path, spec: dict, name: str | None = None) -> Path:
    path = tmp / (name or f"{spec['name']}.yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


_open_runs: list = []  # runs left RUNNING, as a live (or dead) worker leaves them


def log_known(uri: str, path: Path, outcomes: dict, profile: str | None = None) -> None:
    """Log every cell's outcome through the real tracking code: metrics (+ `history`), failed, pruned, running."""
    spec = load_spec(path)
    store = tracking.open_store(uri)
    exp = tracking.experiment_id(store, spec.name)
    parent = tracking.sweep_run(store, exp, spec, profile, path.read_text())
    for cell in expand(spec, profile):
        outcome = outcomes.get((cell.label, cell.seed))
        if outcome is None:
            continue
        ctx = cellrun.cell_run(cellrun.SweepRecord(store, exp, parent, spec, profile), cell)
        # no system-metrics sampler: a run left RUNNING would keep its thread polling the store past the test
        with unittest.mock.patch.dict(os.environ, {system.SWITCH: "false"}):
            log = ctx.__enter__()
        if outcome == "running":
            _open_runs.append(ctx)
            continue
        try:
            if outcome in ("failed", "pruned"):
                raise (Pruned("pruned at epoch 3") if outcome == "pruned" else RuntimeError("CUDA out of memory"))
            for epoch, value in enumerate(outcome.get("history", []), start=1):
                log.log_epoch({"epoch": epoch, "val_acc": value})
            log.log_summary({k: v for k, v in outcome.items() if k != "history"})
        except (Pruned, RuntimeError) as exc:
            assert ctx.__exit__(type(exc), exc, exc.__traceback__) is False
        else:
            ctx.__exit__(None, None, None)
    tracking.end_run(store, parent)


def table3_outcomes() -> dict:
    out = {}
    for row in TABLE3["rows"]:
        model = row.get("model", R18)["name"]
        for seed, known in enumerate(KNOWN3[row["label"]]):
            if isinstance(known, tuple):
                known = dict(
                    zip(("train_loss", "val_loss", "train_acc", "best_val_acc"), known),
                    params=PARAMS[model],
                    history=[known[3] - 0.1, known[3] - 0.02, known[3]],
                )
            out[(row["label"], seed)] = known
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """An empty, initialised store database: creating one runs MLflow's migrations (seconds)."""
    db = tmp_path_factory.mktemp("pristine") / "mlflow.db"
    tracking.open_store(f"sqlite:///{db}").client.search_experiments()
    return db


@pytest.fixture
def fresh_uri(pristine, tmp_path) -> str:
    """A copy of the empty store in this test's temp dir; its experiments keep artifacts beside it."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(pristine, db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="module")
def known(tmp_path_factory, pristine) -> tuple[str, Path]:
    """One store holding table3 (three seeds, every cell state) and acts (one seed, sorted)."""
    tmp = tmp_path_factory.mktemp("known")
    (tmp / "store").mkdir()
    shutil.copy(pristine, tmp / "store" / "mlflow.db")
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    log_known(uri, write(tmp, TABLE3), table3_outcomes())
    log_known(
        uri,
        write(tmp, ACTS),
        {(label, 0): {"test_acc": acc, "history": [acc - 0.05, acc]} for label, acc in KNOWN_ACTS.items()}
        | {("ELU", 0): "running"},
    )
    return uri, tmp


# --- golden files ---------------------------------------------------------------------------


def test_known_runs_render_the_golden_markdown_csv_latex_and_html(known):
    table = tables.build("table3", tracking_uri=known[0])
    for fmt, ext in (("markdown", "md"), ("csv", "csv"), ("latex", "tex"), ("html", "html")):
        assert_golden(tables.render(table, fmt), f"table3.{ext}")
    text = tables.render(table)
    # every state shows as such; partial rows say which seed is missing and why
    assert "| 5 | DenseNet-201 | – |" in text and "| failed | failed | failed | failed |" in text
    assert "| running/pruned |" in text and "| missing | missing |" in text
    assert "(n=2/3)" in text and "row 4 (d201-l1): seed 2 failed" in text
    assert "| L1, 1e-4 |" in text and "| L2, 5e-4 |" in text and "| 11.17M |" in text


def test_sorted_single_seed_table_says_significance_cannot_be_assessed(known):
    text = tables.render(tables.build("acts", tracking_uri=known[0]))
    assert_golden(text, "acts.md")
    rows = [line.split(" | ")[0].lstrip("| ") for line in text.splitlines()[2:9]]
    assert rows == ["Leaky ReLU", "ReLU", "GELU", "SiLU", "Mish", "PReLU", "ELU"], "best first, no value last"
    assert "| Leaky ReLU | **87.39** |" in text and "| ELU | running |" in text
    assert "cannot be assessed" in text and "†" not in text


def test_real_sweep_renders_the_golden_layout_with_the_logged_values(write_spec, store_uri, synthetic_data):
    rows = [
        {"label": "ReLU", "activation": "relu"},
        DIVERGES,
    ]
    path = write_spec(seeds=[0, 1], rows=rows)
    report = sweep.run(
        path, "quick", tracking_uri=store_uri, device="cpu", data=synthetic_data, console=Console(quiet=True)
    )
    assert len(report.finished) == 2 and len(report.failed) == 2
    grown = write_spec(seeds=[0, 1, 2], rows=rows, name="grown.yaml")  # a third seed, not run yet
    table = tables.build(str(grown), "quick", tracking_uri=store_uri)
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny").experiment_id
    relu = [r.data.metrics["test_acc"] for r in client.search_runs([exp], "tags.`sweeper.row` = 'ReLU'")]
    assert sorted(table.values[0][0].values) == sorted(relu) and len(relu) == 2
    mean = tables.fmt_number(sum(relu) / 2, "percent")
    for fmt, ext in (("markdown", "md"), ("csv", "csv"), ("latex", "tex")):
        text = tables.render(table, fmt)
        assert mean in text
        assert_golden(re.sub(r"\d+\.\d+", "#", text), f"tiny_sweep.{ext}")


# --- significance ---------------------------------------------------------------------------


def test_significance_marks_overlapping_rows_and_not_clearly_different_ones(tmp_path, fresh_uri):
    spec = {
        **ACTS,
        "name": "sig",
        "seeds": [0, 1, 2],
        "rows": ACTS["rows"][:4],
        "table": {**ACTS["table"], "sort": None},
    }
    known = {
        "ReLU": [0.90, 0.91, 0.92],
        "Leaky ReLU": [0.80, 0.81, 0.82],
        "GELU": [0.905, 0.915, 0.895],
        "SiLU": [0.89, 0.88],
    }
    log_known(
        fresh_uri,
        write(tmp_path, spec),
        {(label, s): {"test_acc": v} for label, vals in known.items() for s, v in enumerate(vals)},
    )
    table = tables.build("sig", tracking_uri=fresh_uri)
    p = table.pvalues(0)
    assert table.best(0) == 0 and p[0] is None
    assert p[1] == pytest.approx(stats.ttest_ind(known["ReLU"], known["Leaky ReLU"], equal_var=False).pvalue)
    assert p[1] < 0.001 and p[2] > 0.5 and 0.04 < p[3] < 0.05  # SiLU: two seeds, just significant
    assert table.ties(0) == [False, False, True, False]
    lines = tables.render(table).splitlines()
    assert lines[2] == "| ReLU | **91.00 ± 1.00** |"
    assert lines[3] == "| Leaky ReLU | 81.00 ± 1.00 |", "clearly different: not marked"
    assert lines[4] == "| GELU | 90.50 ± 1.00 † |", "overlapping: marked"
    assert "Welch's t-test, two-sided, p ≥ 0.05" in "\n".join(lines)


def test_welch_p_is_scipys_welch_test_and_handles_small_samples():
    cases = [
        ([0.9, 0.91, 0.92], [0.8, 0.81, 0.82]),
        ([0.9, 0.91, 0.92], [0.89, 0.88]),
        ([0.5, 0.7], [0.6, 0.61, 0.59, 0.65, 0.58]),
        ([1.0, 1.0, 1.0], [0.9, 0.95, 1.0]),
    ]
    for a, b in cases:
        assert tables.welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    assert tables.welch_p([0.9], [0.8, 0.7]) is None
    assert tables.welch_p([0.9, 0.9], [0.9, 0.9]) == 1.0
    assert tables.welch_p([0.9, 0.9], [0.8, 0.8]) == 0.0


def test_a_search_lists_the_trials_that_ran_with_their_sampled_values(tmp_path, fresh_uri):
    spec = {
        **ACTS,
        "name": "srch",
        "rows": None,
        "search": {
            "sampler": "tpe",
            "n_trials": 4,
            "objective": {"metric": "test_acc"},
            "params": {
                "optimizer.lr": {"type": "float", "low": 1.0e-4, "high": 1.0, "log": True},
                "activation": {"type": "categorical", "choices": ["relu", "gelu"]},
            },
        },
        "table": {
            "columns": [
                {"key": "row", "header": "Trial"},
                {"key": "optimizer.lr", "header": "LR", "format": "sci"},
                {"key": "activation", "header": "Activation"},
            ],
            "metrics": [{"key": "test_acc", "header": "Test Accuracy (%)", "format": "percent"}],
        },
    }
    spec.pop("rows")
    path = write(tmp_path, spec)
    loaded, store = load_spec(path), tracking.open_store(fresh_uri)
    exp = tracking.experiment_id(store, "srch")
    parent = tracking.sweep_run(store, exp, loaded, None, path.read_text())
    trials = [(3.3e-3, "gelu", 0.61), (0.25, "relu", Pruned), (1.7e-4, "relu", 0.55), (0.01, "gelu", KeyboardInterrupt)]
    for number, (lr, act, acc) in enumerate(trials):
        cell = trial_cell(loaded, None, {"optimizer.lr": lr, "activation": act}, number)
        with (
            contextlib.suppress(Pruned, KeyboardInterrupt),
            cellrun.cell_run(
                cellrun.SweepRecord(store, exp, parent, loaded, None), cell, {"sweeper.trial": str(number)}
            ) as log,
        ):
            if not isinstance(acc, float):
                raise acc("stopped")
            log.log_summary({"test_acc": acc})
    lines = tables.render(tables.build("srch", tracking_uri=fresh_uri)).splitlines()
    assert lines[2:6] == [  # best first, then the rest in trial order
        "| 1 | 3.3e-3 | gelu | **61.00** |",
        "| 3 | 1.7e-4 | relu | 55.00 |",
        "| 2 | 2.5e-1 | relu | pruned |",
        "| 4 | 1e-2 | gelu | interrupted |",
    ]


def test_exact_ties_are_all_best_and_not_daggered():
    metric = Metric(key="test_acc", header="Acc", format="percent", mark="star")
    values = [[tables.Value([0.9, 0.92], 2)], [tables.Value([0.92, 0.9], 2)], [tables.Value([0.5, 0.5], 2)]]
    table = tables.Table("t", ["Row", "Acc"], [["a"], ["b"], ["c"]], [metric], values)
    assert tables.render(table).splitlines()[2:5] == [
        "| a | 91.00 ± 1.41* |",
        "| b | 91.00 ± 1.41* |",
        "| c | 50.00 ± 0.00 |",
    ]


# --- versions, checks, errors ---------------------------------------------------------------


def test_only_the_current_spec_version_counts_unless_all_versions(tmp_path, fresh_uri):
    old = write(tmp_path, {**ACTS, "name": "ver", "rows": ACTS["rows"][:2], "table": {**ACTS["table"], "sort": None}})
    log_known(fresh_uri, old, {("ReLU", 0): {"test_acc": 0.87}, ("Leaky ReLU", 0): {"test_acc": 0.86}})
    spec = yaml.safe_load(old.read_text())
    spec["base"]["epochs"] = 40  # a new version: every cell hash changes
    spec["rows"][1]["label"] = "LReLU"
    new = write(tmp_path, spec, "ver2.yaml")
    text = tables.render(tables.build(str(new), tracking_uri=fresh_uri))
    assert "| ReLU | missing |" in text and "| LReLU | missing |" in text
    text = tables.render(tables.build(str(new), tracking_uri=fresh_uri, all_versions=True))
    assert "| ReLU | **87.00** |" in text and "| LReLU | missing |" in text, "matched by row label and seed"
    assert "Includes runs of older spec versions (--all-versions): ReLU seed 0 (cell " in text
    result = runner.invoke(app, ["table", str(new), "--tracking-uri", fresh_uri, "--all-versions"])
    assert result.exit_code == 0 and "**87.00**" in result.output


def test_check_passes_on_the_same_table_and_fails_with_a_diff(known, tmp_path):
    uri = known[0]
    table_md = tables.render(tables.build("acts", tracking_uri=uri))
    doc = tmp_path / "report.md"
    padded = table_md.replace("| ReLU | 87.20 |", "|  ReLU  |   87.20 |")  # re-aligned by an editor: still the same
    doc.write_text("# Report\n\nSome text.\n\n" + padded + "\nMore text.\n")
    result = runner.invoke(app, ["table", "acts", "--tracking-uri", uri, "--check", str(doc)])
    assert result.exit_code == 0, result.output
    doc.write_text(doc.read_text().replace("87.20", "87.30"))
    result = runner.invoke(app, ["table", "acts", "--tracking-uri", uri, "--check", str(doc)])
    assert result.exit_code == 1
    assert "-| ReLU | 87.30 |" in result.output and "+| ReLU | 87.20 |" in result.output
    doc.write_text("# Report\n\nno table here\n")
    result = runner.invoke(app, ["table", "acts", "--tracking-uri", uri, "--check", str(doc)])
    assert result.exit_code == 1 and "no table with the header line" in result.output
    result = runner.invoke(app, ["table", "acts", "--tracking-uri", uri, "--check", str(tmp_path / "nope.md")])
    assert result.exit_code == 2 and "nope.md: no such file" in result.output


def test_formats_and_out_through_the_cli(known, tmp_path):
    out = tmp_path / "t.tex"
    result = runner.invoke(app, ["table", "table3", "--tracking-uri", known[0], "-f", "latex", "--out", str(out)])
    assert result.exit_code == 0 and out.read_text() == (GOLDEN / "table3.tex").read_text()
    result = runner.invoke(
        app, ["table", "table3", "--tracking-uri", known[0], "-f", "docx", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "Choose one of markdown, csv, latex, html" in result.output
    assert not (tmp_path / "x").exists()


def test_bad_table_layouts_are_user_errors(tmp_path):
    bad = {**ACTS, "table": {**ACTS["table"], "sort": "val_acc"}}
    with pytest.raises(UserError, match="table.sort 'val_acc' is not one of the table's metrics"):
        load_spec(write(tmp_path, bad))
    typo = {**ACTS, "table": {**ACTS["table"], "columns": [{"key": "optimizer.lrr", "header": "LR"}]}}
    # caught when the spec is read, before anything is trained or logged
    with pytest.raises(UserError, match=r"acts.yaml:\d+: table.columns.0.key: 'optimizer.lrr' is not a config key"):
        load_spec(write(tmp_path, typo))


# --- figures and the report -----------------------------------------------------------------


def test_curves_and_bars_data_from_the_logged_histories(known):
    uri = known[0]
    store = tracking.open_store(uri)
    table = tables.build("table3", tracking_uri=uri)
    curve = compare.curves(table, "val_acc", store)
    relu = curve[curve["label"] == "r18-relu"].set_index("epoch")
    finals = [k[3] for k in KNOWN3["r18-relu"]]
    assert list(relu.index) == [1, 2, 3] and list(relu["n"]) == [3, 3, 3]
    assert relu.loc[3, "mean"] == pytest.approx(sum(finals) / 3)
    assert relu.loc[3, "min"] == min(finals) and relu.loc[1, "max"] == pytest.approx(max(finals) - 0.1)
    assert set(curve["label"]) == {"r18-relu", "r18-gelu", "d201-strong", "d201-l1"}, "rows without runs have no curve"
    bar = compare.bars(table, 3)
    assert list(bar["label"]) == [r["label"] for r in TABLE3["rows"]]
    assert bar.loc[0, "mean"] == pytest.approx(100 * sum(finals) / 3) and bar.loc[3, "n"] == 2
    assert list(bar["status"])[4:] == ["failed", "running/pruned", "missing"]
    assert bar["reported"].isna().all(), "table3 has no reported values"
    with pytest.raises(UserError, match="logged the metric 'val_acc_typo'"):
        compare.curves(table, "val_acc_typo", store)


def test_plot_writes_html_and_logs_it_to_the_sweep_run(known, tmp_path):
    out = tmp_path / "fig" / "acts.html"
    result = runner.invoke(app, ["plot", "acts", "--tracking-uri", known[0], "--out", str(out), "--no-png"])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "plotly" in html and "Leaky ReLU" in html and "Test Accuracy (%)" in html
    assert not re.search(r"<script[^>]*\ssrc=", html) and len(html) > 3_000_000, "plotly.js inside: draws offline"
    table = tables.build("acts", tracking_uri=known[0])
    client = MlflowClient(known[0])
    assert [a.path for a in client.list_artifacts(table.parent_run, "figures")] == ["figures/comparison_val_acc.html"]
    # the report redraws the same figure: one artifact under one name, not a second copy
    result = runner.invoke(app, ["report", "--out", str(tmp_path / "r"), "--tracking-uri", known[0], "--no-png"])
    assert result.exit_code == 0, result.output
    assert [a.path for a in client.list_artifacts(table.parent_run, "figures")] == ["figures/comparison_val_acc.html"]
    result = runner.invoke(app, ["plot", "acts", "--tracking-uri", known[0], "--bar-metric", "nope"])
    assert result.exit_code == 2 and "'nope' is not a metric of the table of 'acts'" in result.output


def test_report_has_every_sweeps_table_and_figure_links_and_checks_clean(known, tmp_path):
    out = tmp_path / "results"
    result = runner.invoke(app, ["report", "--out", str(out), "--tracking-uri", known[0], "--no-png"])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "## Activation Functions" in text and "## Settings and results (report 002, Table 3 layout)" in text
    assert "(figures/acts-default.html)" in text and (out / "figures" / "acts-default.html").is_file()
    assert "(figures/table3-default.html)" in text
    for name in ("acts", "table3"):
        result = runner.invoke(app, ["table", name, "--tracking-uri", known[0], "--check", str(out / "report.md")])
        assert result.exit_code == 0, result.output
