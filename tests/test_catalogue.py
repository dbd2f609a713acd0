"""One name, one place: every catalogue entry has its implementation, and every implementation its entry."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from sweeper import catalogue as C
from sweeper.models import REGISTERED, create_model
from sweeper.schema import fields
from sweeper.schema.config import SCHEDULE_BLOCKS, TrainConfig
from sweeper.schema.search import PRUNER_BLOCKS
from sweeper.schema.targets import implementation
from sweeper.sweep import study
from sweeper.tables.formats import RENDERERS
from sweeper.training.data import make_splits
from sweeper.training.optim import build_optimizer
from sweeper.training.train import train


def test_every_built_in_model_is_registered_and_every_registered_one_listed():
    assert set(REGISTERED) == set(C.MODELS.names)
    for entry in C.MODELS:
        assert implementation(C.MODELS, entry.name) is REGISTERED[entry.name], entry.target


def test_the_schema_takes_exactly_the_catalogues_names():
    def tags(field: str) -> set[str]:
        return set(fields.tags(TrainConfig.model_fields[field].annotation)) - {"custom"}

    assert tags("model") == set(C.MODELS.names)
    assert tags("optimizer") == set(C.OPTIMIZERS.names)
    assert tags("loss") == set(C.LOSSES.names)
    assert tags("scheduler") == set(C.SCHEDULES.names) == set(SCHEDULE_BLOCKS)
    assert set(PRUNER_BLOCKS) == set(C.PRUNERS.names)


@pytest.mark.parametrize("entry", list(C.ACTIVATIONS), ids=lambda e: e.name)
def test_activations_build_fresh_modules(entry):
    factory = implementation(C.ACTIVATIONS, entry.name)
    one, two = factory(), factory()
    assert isinstance(one, nn.Module) and one is not two


@pytest.mark.parametrize("entry", list(C.OPTIMIZERS), ids=lambda e: e.name)
def test_optimizers_take_what_their_capabilities_say(entry):
    cls = implementation(C.OPTIMIZERS, entry.name)
    assert issubclass(cls, torch.optim.Optimizer)
    params = inspect.signature(cls).parameters
    for setting in entry.uses:
        assert setting in params, f"{entry.name} uses {setting} but does not take it"
    assert "fused" in params or not entry.fused, f"{entry.name} is marked fused but takes no fused argument"
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    config = TrainConfig.model_validate(
        {"model": {"name": "baseline_cnn"}, "epochs": 1, "optimizer": {"name": entry.name}}
    )
    optimizer = build_optimizer(config, model)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "every parameter moved"
    assert optimizer.defaults.get("fused", False) is entry.fused


def test_capabilities_name_real_settings_and_losses_and_schedules_resolve():
    optimizer_fields = set(TrainConfig.model_fields["optimizer"].default.model_fields)
    assert set().union(*(e.uses for e in C.OPTIMIZERS)) <= optimizer_fields
    loss_fields = set(TrainConfig.model_fields["loss"].default.model_fields)
    assert set().union(*(e.uses for e in C.LOSSES), *(e.uses for e in C.PENALTIES)) <= loss_fields
    for kind in (C.LOSSES, C.SCHEDULES):
        for entry in kind:
            assert callable(implementation(kind, entry.name)), entry.target


def test_samplers_pruners_and_table_formats_have_their_builders():
    assert set(study.SAMPLERS) == set(C.SAMPLERS.names)
    assert set(study.PRUNERS) == set(C.PRUNERS.names)
    assert set(RENDERERS) == set(C.TABLE_FORMATS.names)


def test_a_run_logs_exactly_the_catalogues_metrics(synthetic_data):
    config = TrainConfig.model_validate(
        {
            "model": {"name": "plain_cnn", "stem": 8, "widths": [8], "hidden": 8},
            "data": {"batch_size": 32, "val_size": 20, "train_size": 64, "test_size": 20},
            "epochs": 1,
            "precision": "fp32",
        }
    )
    data = make_splits(*synthetic_data, val_size=20, train_size=64, test_size=20, seed=0)
    result = train(config, data, device="cpu")
    assert set(result.history[0]) - {"epoch"} == set(C.metric_names("epoch"))
    # train_time is the runner's: it counts the resumed parts of a run too
    assert set(result.summary) | {"train_time"} == set(C.metric_names("summary"))


def test_a_user_model_goes_through_the_same_door(tmp_path):
    from sweeper.schema import plugins

    (tmp_path / "nets.py").write_text(
        "from torch import nn\n"
        "def wide(width: int, num_classes: int, activation):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, width), activation(), nn.Linear(width, num_classes))\n"
    )
    plugins.resolve("nets.py:wide", base_dir=tmp_path)
    model = create_model("nets.py:wide", activation="gelu", width=7)
    assert any(isinstance(m, nn.GELU) for m in model.modules())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
