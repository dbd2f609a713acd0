"""The recipe's pieces on their own: the fp16 gradient scaler, the weight EMA, test-time mirroring, the one-cycle schedule."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import cfg, noise

from sweeper.training import train as T
from sweeper.training.data import Split
from sweeper.training.evaluate import evaluate
from sweeper.training.optim import build_optimizer, build_scheduler
from sweeper.training.recipe import WeightAverage


def test_fp16_trains_with_a_live_grad_scaler(small):
    scales = []
    result = T.train(
        cfg(precision="fp16", epochs=1),
        small,
        device="cpu",
        on_epoch=lambda m, checkpoint: scales.append(checkpoint()["scaler"]),
    )
    assert math.isfinite(result.history[-1]["train_loss"])
    assert scales[0].get("scale", 0) > 0, "the scaler was enabled and kept a loss scale"


def test_ema_ramps_its_decay_then_averages_weights_and_statistics():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightAverage(model, 0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 101):
        with torch.no_grad():
            model[0].weight.add_(0.1)
            model[1].running_mean.fill_(float(step))
            model[1].num_batches_tracked.fill_(step)
        ema.update(model)
        keep = min(0.9, step / (step + 9))  # 0.1 at the first step: the random init barely counts
        expected = {
            k: keep * expected[k] + (1 - keep) * v if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()
        }
    for key, value in ema.module.state_dict().items():
        assert torch.allclose(value, expected[key]), key
    assert ema.module[1].num_batches_tracked.item() == 100
    restored = WeightAverage(model, 0.9)
    restored.load_state_dict(copy.deepcopy(ema.state_dict()))
    assert restored.steps == 100 and torch.equal(restored.module[0].weight, ema.module[0].weight)


class Lopsided(torch.nn.Module):
    """Logits from the left half of the image only: a mirror changes its prediction."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :, :16].mean((2, 3)).repeat(1, 4)[:, :10] * 5


def test_tta_averages_the_logits_of_each_image_and_its_mirror():
    images, labels = noise(30, 1), torch.arange(30) % 10
    split, model = Split(images, labels), Lopsided()
    config = cfg(**{"data.eval_batch_size": 7, "data.normalize": "half"})
    x = images.float() / 127.5 - 1
    for tta, logits in ((False, model(x)), (True, (model(x) + model(x.flip(-1))) / 2)):
        got = evaluate(model, split, cfg(**{**config.model_dump(), "tta": tta}), torch.device("cpu"), "fp32")
        assert got["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
        assert got["acc"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())


def test_onecycle_ramps_up_then_down_every_step():
    config = cfg(
        **{
            "scheduler": {"name": "onecycle", "warmup_fraction": 0.25, "start_factor": 0.2, "end_factor": 0.0},
            "epochs": 2,
            "optimizer.lr": 1.0,
        }
    )
    opt = build_optimizer(config, torch.nn.Linear(2, 2))
    sched = build_scheduler(config, opt, steps_per_epoch=4)  # 8 steps, 2 of warm-up
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.2, 0.6, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
