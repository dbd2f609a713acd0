"""The training loop and its pieces: losses, optimizers, schedulers, seeding, resume, precision."""

from __future__ import annotations

import math

import helpers
import pytest
import torch
import torch.nn.functional as F

from sweeper.schema.config import TrainConfig
from sweeper.schema.dotted import merge
from sweeper.training import train as T
from sweeper.training.data import make_splits
from sweeper.training.optim import build_optimizer, build_scheduler
from sweeper.training.recipe import loss_fn

BASE = merge(helpers.BASE, {"data": {"batch_size": 16}})  # the loop's pieces: more steps an epoch


def cfg(**changes) -> TrainConfig:
    return helpers.cfg(BASE, **changes)


@pytest.fixture(scope="module")
def data(synthetic_data):
    return make_splits(*synthetic_data, val_size=50, train_size=200, test_size=100, seed=0)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = torch.randn(32, 10), torch.randint(0, 10, (32,))
    model = torch.nn.Linear(1, 1)
    focal = loss_fn(cfg(**{"loss.name": "focal", "loss.gamma": 0.0}))(logits, target, model)
    assert torch.allclose(focal, F.cross_entropy(logits, target))
    sharper = loss_fn(cfg(**{"loss.name": "focal", "loss.gamma": 2.0}))(logits, target, model)
    assert sharper < focal, "focusing down-weights every example"


def test_label_smoothing_and_penalties():
    logits, target = torch.randn(16, 10), torch.randint(0, 10, (16,))
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(0.5)
    smooth = loss_fn(cfg(**{"loss.label_smoothing": 0.1}))(logits, target, model)
    assert torch.allclose(smooth, F.cross_entropy(logits, target, label_smoothing=0.1))
    ce = F.cross_entropy(logits, target)
    l1 = loss_fn(cfg(**{"loss.penalty": "l1", "loss.penalty_weight": 0.01}))(logits, target, model)
    l2 = loss_fn(cfg(**{"loss.penalty": "l2", "loss.penalty_weight": 0.01}))(logits, target, model)
    assert torch.allclose(l1, ce + 0.01 * 6 * 0.5), "L1 sums |w| over weight matrices, not biases"
    assert torch.allclose(l2, ce + 0.01 * 6 * 0.25)


@pytest.mark.parametrize(
    "name,cls",
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_optimizers(name, cls):
    opt = build_optimizer(cfg(**{"optimizer.name": name, "optimizer.weight_decay": 5e-4}), torch.nn.Linear(2, 2))
    assert isinstance(opt, cls) and opt.defaults["weight_decay"] == 5e-4
    nesterov = build_optimizer(cfg(**{"optimizer.name": "sgd", "optimizer.nesterov": True}), torch.nn.Linear(2, 2))
    assert nesterov.defaults["nesterov"] and nesterov.defaults["momentum"] == 0.9


def lrs(config: TrainConfig, metric=lambda epoch: 0.5) -> list[float]:
    opt = build_optimizer(config, torch.nn.Linear(2, 2))
    sched = build_scheduler(config, opt)
    out = []
    for epoch in range(config.epochs):
        out.append(opt.param_groups[0]["lr"])
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(metric(epoch))
        elif sched is not None:
            sched.step()
    return out


def test_plateau_halves_after_patience_flat_epochs():
    c = cfg(**{"scheduler": {"name": "plateau", "factor": 0.5, "patience": 3}, "epochs": 10, "optimizer.lr": 1e-3})
    # first epoch sets the best; epochs 2-4 are flat (3 = patience), the 5th flat epoch reduces
    assert lrs(c) == pytest.approx([1e-3] * 5 + [5e-4] * 4 + [2.5e-4])
    assert lrs(c, metric=lambda e: e) == pytest.approx([1e-3] * 10), "improving accuracy keeps the lr"


def test_cosine_with_warmup_and_step():
    c = cfg(**{"scheduler": {"name": "cosine", "warmup_epochs": 2}, "epochs": 6, "optimizer.lr": 0.1})
    got = lrs(c)
    assert got[:2] == pytest.approx([0.05, 0.1]), "linear warm-up"
    assert got[2:] == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])
    s = cfg(**{"scheduler": {"name": "step", "step_size": 2, "gamma": 0.1}, "epochs": 5, "optimizer.lr": 1.0})
    assert lrs(s) == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert lrs(cfg(epochs=3)) == pytest.approx([3e-3] * 3)


def test_training_learns_and_reports_history(data):
    result = T.train(cfg(epochs=3), data, device="cpu")
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.summary["test_acc"] > 0.3, "well above the 10% of chance"
    assert 1 <= result.summary["best_epoch"] <= 3
    best = max(h["val_acc"] for h in result.history)
    assert result.summary["best_val_acc"] == best


def test_same_seed_same_run_other_seed_differs(data):
    a = T.train(cfg(seed=3), data, device="cpu").history
    b = T.train(cfg(seed=3), data, device="cpu").history
    c = T.train(cfg(seed=4), data, device="cpu").history
    assert a == [{**h, "epoch_time": a[i]["epoch_time"], "images_per_s": a[i]["images_per_s"]} for i, h in enumerate(b)]
    assert [h["train_loss"] for h in a] != [h["train_loss"] for h in c]


def test_resume_from_a_checkpoint_continues_the_same_run(data):
    full = T.train(cfg(epochs=3), data, device="cpu")
    saved = {}

    def keep_first(metrics, checkpoint):
        if metrics["epoch"] == 1:
            saved.update(checkpoint())
            raise KeyboardInterrupt  # as if killed after the first epoch

    with pytest.raises(KeyboardInterrupt):
        T.train(cfg(epochs=3), data, device="cpu", on_epoch=keep_first)
    import copy

    resumed = T.train(cfg(epochs=3), data, device="cpu", resume=copy.deepcopy(saved))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in full.history])
    assert resumed.summary["test_acc"] == full.summary["test_acc"]


def test_bf16_autocast_trains(data):
    result = T.train(cfg(precision="bf16"), data, device="cpu")
    assert math.isfinite(result.history[-1]["train_loss"])


def test_device_auto_and_errors():
    from sweeper.errors import UserError
    from sweeper.training.device import pick_device

    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UserError):
        pick_device("nonsense")


def numerics_flags() -> tuple:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )


def test_training_yields_epochs_and_restores_numerics_when_its_consumer_stops_early(data):
    before = numerics_flags()
    seen = []
    with T.Training(cfg(epochs=3, deterministic=True), data, device="cpu") as training:
        for epoch in training:
            seen.append((epoch.number, epoch.best, epoch.state()["epoch"]))
            assert torch.are_deterministic_algorithms_enabled(), "the run's numerics hold while it trains"
            break  # a pruner stopping the cell after one epoch
    assert seen == [(1, True, 1)]
    assert numerics_flags() == before, "stopping early gives the process its own settings back"
    full = T.Training(cfg(epochs=2), data, device="cpu")
    epochs = [e.metrics for e in full]
    assert [m["epoch"] for m in epochs] == [1, 2] and numerics_flags() == before
    assert full.finish().history == epochs
