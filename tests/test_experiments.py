"""The shipped specs: each validates, `validate`/`list` print exact parameter counts, quick runs end to end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from rich.console import Console
from typer.testing import CliRunner

from sweeper import sweep, tables
from sweeper.catalogue import AUGMENTS
from sweeper.cli import app
from sweeper.models import count_params
from sweeper.schema.config import TrainConfig
from sweeper.schema.spec import expand, load_spec
from sweeper.sweep import runner
from sweeper.training.cost import (
    CPU_KINDS,
    DEMO_BUDGET_SECONDS,
    DEMO_EXTRA_SECONDS,
    SweepCost,
    images_per_epoch,
    model_cost,
    run_seconds,
    sweep_cost,
)
from sweeper.training.train import build_model

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SPECS = sorted(EXPERIMENTS.glob("*.yaml"))
# Searches sample their cells through Optuna; test_sweep_optuna covers them.
TABLE_SPECS = [p for p in SPECS if "search" not in yaml.safe_load(p.read_text())]
cli = CliRunner()


def test_every_shipped_spec_validates_and_has_a_quick_profile():
    assert len(SPECS) >= 10, "every table of both reports has a spec"
    for path in SPECS:
        spec = load_spec(path)
        assert "quick" in spec.profiles, f"{path.name} has no quick profile"
        assert spec.source and spec.title, f"{path.name} says which report table it reproduces"


# --- exact parameter counts in `validate` and `list` ----------------------------------------

REPORTED = {  # the reports' own counts, as `list` must print them
    "baseline_cnn 769,162",
    "resnet_basic 1,266,986",
    "resnet_basic 3,195,306",
    "resnet18 11,173,962",
    "resnet50 23,520,842",
    "vgg_a 9,750,922",
    "vgg_a 9,758,474",
}
_counts: dict[str, int] = {}


def real_count(config: TrainConfig) -> int:
    """count_params of the network as training builds it (shapes only: on the meta device, cached)."""
    key = config.model.model_dump_json() + config.activation
    if key not in _counts:
        with torch.device("meta"):
            _counts[key] = count_params(build_model(config))
    return _counts[key]


def test_validate_prints_each_row_with_its_exact_parameter_count():
    result = cli.invoke(app, ["validate", *map(str, TABLE_SPECS)], terminal_width=300)
    assert result.exit_code == 0, result.output
    sections = re.split(r"^ok ", result.output, flags=re.M)[1:]
    assert len(sections) == len(TABLE_SPECS)
    for path, section in zip(TABLE_SPECS, sections):
        printed = dict(re.findall(r"^  (.+): .*, ([\d,]+) params$", section, flags=re.M))
        for cell in expand(load_spec(path)):
            assert printed[cell.label] == f"{real_count(cell.config):,}", (path.name, cell.label)


def test_list_shows_rows_seeds_epochs_models_and_cost_of_each_profile():
    result = cli.invoke(app, ["list", str(EXPERIMENTS)], terminal_width=400)
    assert result.exit_code == 0, result.output
    for reported in REPORTED:
        assert f"{reported} params" in result.output
    lines = result.output.splitlines()
    for path in TABLE_SPECS:
        spec, cells = load_spec(path), expand(load_spec(path))
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{spec.name} ({path}): "))
        head, models, default, quick = lines[at : at + 4]
        rows, seeds = len(spec.row_overrides()), len(spec.seeds)
        assert f": {rows} row{'s' * (rows > 1)} x {seeds} seed{'s' * (seeds > 1)} {spec.seeds}" in head
        for cell in cells:
            assert f"{cell.config.model.name} {real_count(cell.config):,} params" in models, (path.name, cell.label)
        epochs = "/".join(str(e) for e in sorted({c.config.epochs for c in cells}))
        assert default.startswith(f"  default: {len(cells)} cell") and f" x {epochs} epochs" in default
        assert quick.startswith("  quick: ") and "GPU" in quick and "CPU" in quick


def test_list_reports_a_broken_spec_and_still_lists_the_rest(tmp_path):
    (tmp_path / "good.yaml").write_text((EXPERIMENTS / "baseline.yaml").read_text())
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nbase: {model: {name: resnet99}, epochs: 1}\nrows: [{label: a}]\n"
        "table: {metrics: [{key: test_acc, header: Acc}]}\n"
    )
    result = cli.invoke(app, ["list", str(tmp_path)], terminal_width=300)
    assert result.exit_code == 2
    assert (
        "baseline_cnn 769,162 params" in result.output and "bad.yaml" in result.output and "resnet99" in result.output
    )
    result = cli.invoke(app, ["list", str(tmp_path / "none")])
    assert result.exit_code == 2 and "is not a folder" in result.output


# --- the cost arithmetic --------------------------------------------------------------------


def test_flops_per_image_match_a_hand_count():
    config = TrainConfig.model_validate({"model": {"name": "baseline_cnn"}, "epochs": 1})
    # multiply-adds of Table 1: four 3x3 convs at 32, 16, 8 and 4 pixels square, then 2048-256-10
    macs = 3 * 32 * 9 * 32**2 + 32 * 64 * 9 * 16**2 + 64 * 128 * 9 * 8**2 + 128 * 128 * 9 * 4**2 + 2048 * 256 + 256 * 10
    assert model_cost(config).flops == 2 * macs
    assert model_cost(config).params == 769_162


def test_sweep_cost_counts_training_evaluation_and_augmentation(write_spec):
    spec = load_spec(write_spec())  # 2 rows, 2 epochs, 300 train (16 a batch), 50 val, 100 test, weak
    config = expand(spec)[0].config
    f = model_cost(config).flops
    cost = sweep_cost(spec)
    assert images_per_epoch(config) == 288  # the ragged last batch is dropped
    assert cost.cells == 2 and cost.train_images == 2 * 2 * 288
    assert cost.augment_seconds == pytest.approx(2 * 2 * 288 * AUGMENTS.get("weak").cpu_us * 1e-6)
    assert cost.flops == 2 * (2 * (3 * f * 288 + f * 50) + 2 * f * 100)
    assert sweep_cost(spec, "quick").flops < cost.flops
    base = yaml.safe_load(write_spec().read_text())["base"]
    auto = load_spec(write_spec(base={**base, "data": {**base["data"], "augment": "autoaugment"}}, name="auto.yaml"))
    assert sweep_cost(auto).augment_seconds == pytest.approx(2 * 2 * 288 * AUGMENTS.get("autoaugment").cpu_us * 1e-6)
    hour = SweepCost("x", "default", cells=2, train_images=1, flops=25e12 * 3600, augment_seconds=1800)
    # a GPU augments batched beside the network: FLOPs and per-cell work; a CPU adds the augmentation
    assert hour.gpu_hours(25.0, cell_seconds=900) == pytest.approx(1.5)
    assert hour.cpu_hours(25_000.0, cell_seconds=900) == pytest.approx(2.0)


def test_make_demo_fits_its_budget_on_both_cpu_kinds():
    """`make demo` (the activations quick profile) in 5 minutes on either CPU kind, by the measured
    cost model (benchmarks/demo_budget.py), with a quarter kept for slower or busier machines; and not
    needlessly small: the slower kind spends over 60% of the budget, so the table is as good as it allows."""
    makefile = (EXPERIMENTS.parent / "Makefile").read_text()
    assert "run experiments/activations.yaml --profile quick" in makefile
    cost = sweep_cost(load_spec(EXPERIMENTS / "activations.yaml"), "quick")
    seconds = {name: DEMO_EXTRA_SECONDS + run_seconds(cost, kind) for name, kind in CPU_KINDS.items()}
    assert all(s <= 0.75 * DEMO_BUDGET_SECONDS for s in seconds.values()), seconds
    assert max(seconds.values()) >= 0.6 * DEMO_BUDGET_SECONDS, seconds
    # the cost model ranks the kinds as measured: the AVX2 CPU in fp32 is the slower
    assert seconds["fp32"] > seconds["bf16"]


# --- every quick profile end to end, CI-sized ------------------------------------------------

CI_SIZE = {
    "epochs": 1,
    "data.train_size": 10,
    "data.val_size": 10,
    "data.test_size": 10,
    "data.batch_size": 8,
    "data.eval_batch_size": 10,
}


def narrowed(model: dict[str, Any]) -> dict[str, Any]:
    """The same family at its real depth, narrower where its config allows (DenseNet, CIFAR ResNet)."""
    name = model["name"]
    if name.startswith("densenet"):
        return {**model, "growth_rate": 4, "init_features": 8}
    if name == "resnet_basic":  # widths are multiples of 16: a quarter keeps every row distinct
        return {**model, "stem": model["stem"] // 4, "widths": [w // 4 for w in model["widths"]]}
    return model  # baseline CNN, VGG-A, ResNet-18/50: no width knob, trained at full size


def ci_sized(path: Path, out: Path) -> Path:
    """A copy of the spec whose quick profile is CI-sized and whose rows state their narrowed model."""
    raw = yaml.safe_load(path.read_text())
    models = {cell.label: cell.config.model.model_dump(mode="json") for cell in expand(load_spec(path), "quick")}
    for i, row in enumerate(raw.get("rows") or []):
        kept = {k: v for k, v in row.items() if k != "model" and not k.startswith("model.")}
        raw["rows"][i] = {**kept, "model": narrowed(models[row["label"]])}
    raw["profiles"]["quick"] = {**raw["profiles"]["quick"], **CI_SIZE}
    copy = out / path.name
    copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    return copy


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> str:
    """One sqlite store for every spec (one experiment each): creating a store costs seconds here."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def one_thread(monkeypatch):
    """One intra-op thread: on a busy 2-core machine two threads that wait on each other make these
    tiny batches ~10x slower (measured: DenseNet-264 cell 32 s -> 2.7 s at load 12)."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("SWEEPER_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("path", TABLE_SPECS, ids=lambda p: p.stem)
def test_quick_profile_runs_end_to_end_and_fills_the_table(
    path, tmp_path, shared_store, synthetic_data, monkeypatch, one_thread
):
    # Per-cell figures and the exported model cost ~7 s a cell here and never fail a cell (errors
    # there are tagged, not raised), so skipping them hides nothing this test checks; the runner's
    # own tests cover them.
    monkeypatch.setattr(runner, "log_results", lambda *args: None)
    spec = load_spec(path)
    copy = ci_sized(path, tmp_path)
    report = sweep.run(
        copy, "quick", tracking_uri=shared_store, device="cpu", data=synthetic_data, console=Console(quiet=True)
    )
    assert report.failed == [] and len(report.finished) == report.total == len(expand(spec, "quick"))
    table = tables.build(str(copy), "quick", shared_store)
    assert table.labels == [label for label, _ in spec.row_overrides()]
    assert all(value.values for row in table.values for value in row), "every metric of every row has a value"
    lines = [line for line in tables.render(table, "markdown").splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(spec.row_overrides()) and "–" not in "".join(lines)
