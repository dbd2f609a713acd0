"""The pieces of the 8-epoch recipe (experiments/fast.yaml): parameter groups with their own settings and
training spans, a summed loss, alternating flips and test-time translations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from sweeper.models import create_model
from sweeper.schema.config import TrainConfig
from sweeper.schema.dotted import merge, unflatten
from sweeper.schema.spec import expand, load_spec
from sweeper.training.augment import alternating_flips
from sweeper.training.evaluate import _views
from sweeper.training.optim import build_optimizer, build_scheduler
from sweeper.training.recipe import loss_fn

FAST = {
    "model": {
        "name": "fast_net",
        "widths": [8, 16, 16],
        "whitening": "uncentred",
        "head": "unit",
        "bias_lr_scale": 1.0,
    },
    "optimizer": {
        "name": "muon",
        "lr": 0.24,
        "momentum": 0.85,
        "nesterov": True,
        "weight_decay": 0.0755,
        "groups": {
            "filters": {"momentum": 0.6},
            "head": {"lr": 0.67, "weight_decay": 0.00597},
            "norm_biases": {"lr": 0.053},
            "whiten_bias": {"lr": 0.053, "train_epochs": 3},
        },
    },
    "scheduler": {"name": "onecycle", "warmup_fraction": 0.0, "start_factor": 1.0, "end_factor": 0.0},
    "loss": {"label_smoothing": 0.2, "reduction": "sum"},
    "epochs": 8,
}


def config(**changes: object) -> TrainConfig:
    return TrainConfig.model_validate(merge(FAST, unflatten(changes)))


def test_groups_get_their_settings_and_muon_only_the_filters():
    cfg = config()
    model = create_model(
        "fast_net", activation="gelu", widths=[8, 16, 16], whitening="uncentred", head="unit", bias_lr_scale=1.0
    )
    optimizer = build_optimizer(cfg, model)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"filters", "head", "norm_biases", "whiten_bias"}
    assert groups["filters"]["use_muon"] and not any(
        groups[n]["use_muon"] for n in ("head", "norm_biases", "whiten_bias")
    )
    assert (groups["filters"]["lr"], groups["filters"]["momentum"], groups["filters"]["weight_decay"]) == (
        0.24,
        0.6,
        0.0,
    )
    assert (groups["head"]["lr"], groups["head"]["momentum"], groups["head"]["weight_decay"]) == (0.67, 0.85, 0.00597)
    assert (groups["norm_biases"]["lr"], groups["norm_biases"]["weight_decay"]) == (0.053, 0.0755)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == trainable, "every parameter in one group"
    assert len(groups["filters"]["params"]) == 6 and all(p.ndim == 4 for p in groups["filters"]["params"])


def test_a_group_trains_for_its_epochs_only_on_the_schedule_compressed_into_them():
    cfg = config()
    model = create_model("fast_net", widths=[8, 16, 16], bias_lr_scale=1.0)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch=25)  # 200 steps, the bias 75
    names = [g["name"] for g in optimizer.param_groups]
    seen = []
    for _ in range(200):
        seen.append({n: g["lr"] for n, g in zip(names, optimizer.param_groups)})
        optimizer.step()
        scheduler.step()
    assert seen[0]["whiten_bias"] == pytest.approx(0.053) and seen[0]["filters"] == pytest.approx(0.24)
    assert seen[50]["whiten_bias"] == pytest.approx(0.053 * (1 - 50 / 75))
    assert seen[50]["filters"] == pytest.approx(0.24 * (1 - 50 / 200))
    assert all(s["whiten_bias"] == 0 for s in seen[75:]) and seen[199]["head"] > 0


def test_unknown_groups_and_spans_without_a_factor_schedule_are_spec_errors():
    with pytest.raises(ValidationError, match="parameter groups are filters, head, norm_biases, whiten_bias"):
        config(**{"optimizer.groups.heads": {"lr": 0.1}})
    with pytest.raises(ValidationError, match="needs a factor schedule"):
        config(scheduler={"name": "step"})
    with pytest.raises(ValidationError, match="renormalises the filters"):
        config(**{"optimizer.groups.filters.weight_decay": 0.01})
    with pytest.raises(ValidationError, match="adam has no momentum"):
        config(**{"optimizer.name": "adam", "optimizer.nesterov": False, "optimizer.groups.head.momentum": 0.5})
    other = {"model": {"name": "plain_cnn"}, "epochs": 1, "optimizer": {"groups": {"matrices": {"lr": 0.1}}}}
    assert TrainConfig.model_validate(other).optimizer.groups["matrices"].lr == 0.1  # by shape, any model


def test_a_summed_loss_is_the_mean_times_the_batch():
    logits, target = torch.randn(32, 10), torch.randint(10, (32,))
    model = torch.nn.Linear(2, 2)
    summed = loss_fn(config())(logits, target, model)
    mean = loss_fn(config(**{"loss.reduction": "mean"}))(logits, target, model)
    assert summed == pytest.approx(32 * mean.item(), rel=1e-5)
    assert mean == pytest.approx(F.cross_entropy(logits, target, label_smoothing=0.2).item(), rel=1e-6)


def test_alternating_flips_show_every_image_both_ways_in_two_epochs():
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(3))
    first, second, third = (alternating_flips(order, 1000, epoch, seed=7) for epoch in (1, 2, 3))
    assert torch.equal(first ^ second, torch.ones_like(first)), "each image flips the other way next epoch"
    assert torch.equal(first, third) and 400 < int(first.sum()) < 600, "a random half, the same every odd epoch"
    again = alternating_flips(torch.arange(1000), 1000, 1, seed=7)
    assert torch.equal(again[order], first), "a function of the image and the seed: resumes need no state"
    assert not torch.equal(alternating_flips(torch.arange(1000), 1000, 1, seed=8), again)


def test_test_time_translations_average_six_views_as_the_record_weighs_them():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10)).eval()
    x = torch.randn(2, 3, 32, 32)
    model(x)
    cfg = config(tta=True, tta_translate=True)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")

    def mirrored(v):
        return (model(v) + model(v.flip(-1))) / 2

    expected = 0.5 * mirrored(x) + 0.25 * (mirrored(padded[..., :32, :32]) + mirrored(padded[..., 2:, 2:]))
    with torch.no_grad():
        assert torch.allclose(_views(model, x, cfg, torch.contiguous_format), expected, atol=1e-6)
    with pytest.raises(ValidationError, match="set tta: true"):
        config(tta_translate=True)


def test_the_shipped_fast_spec_is_the_8_epoch_recipe_on_three_seeds():
    spec = load_spec("experiments/fast.yaml")
    cells = expand(spec)
    assert [c.seed for c in cells] == [0, 1, 2] and all(c.config.epochs <= 8 for c in cells)
    assert cells[0].config.model.widths == [64, 256, 256] and cells[0].config.optimizer.name == "muon"


def test_the_logged_training_loss_is_per_image_whatever_the_reduction(synthetic_data):
    from sweeper.training.data import make_splits
    from sweeper.training.train import train

    data = make_splits(*synthetic_data, val_size=0, train_size=128, test_size=20, seed=0)
    base = {"model": {"name": "plain_cnn", "stem": 8, "widths": [8], "hidden": 8}, "epochs": 1, "precision": "fp32"}
    base |= {"data": {"batch_size": 32, "val_size": 0}, "optimizer": {"name": "sgd", "lr": 1e-9, "momentum": 0.0}}
    losses = [
        train(TrainConfig.model_validate({**base, "loss": {"reduction": r}}), data, device="cpu").history[0][
            "train_loss"
        ]
        for r in ("mean", "sum")
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4) and 1.0 < losses[0] < 4.0


def test_cosines_floor_is_eta_min_for_every_group():
    cfg = config(
        scheduler={"name": "cosine", "eta_min": 0.01},
        **{"optimizer.groups.whiten_bias.train_epochs": None, "optimizer.groups.head.train_epochs": 8},
    )
    model = create_model("fast_net", widths=[8, 16, 16], bias_lr_scale=1.0)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch=1)
    for _ in range(8):
        optimizer.step()
        scheduler.step()
    # a group on a span of its own (head: all 8 epochs) stops at 0 after it; the others end at eta_min
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs.pop("head") == 0 and all(lr == pytest.approx(0.01) for lr in lrs.values()), lrs
