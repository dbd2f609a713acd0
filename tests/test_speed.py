"""The fast paths compute what the plain ones do: prefetched batches, precision fallback, EMA, TTA, schedules, fast_net."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from sweeper.models import create_model
from sweeper.models.fast import PatchWhitening, _conv
from sweeper.schema.config import TrainConfig, merge, unflatten
from sweeper.training import train as T
from sweeper.training.augment import normalize
from sweeper.training.data import Split, make_splits
from sweeper.training.device import apply_threads, free_cores, input_format, to_device
from sweeper.training.evaluate import evaluate
from sweeper.training.optim import build_optimizer, build_scheduler

BASE = {
    "model": {"name": "plain_cnn", "stem": 8, "widths": [16, 32], "hidden": 32},
    "data": {"augment": "weak", "batch_size": 32, "val_size": 50, "train_size": 200, "test_size": 100},
    "optimizer": {"name": "adam", "lr": 3e-3},
    "epochs": 2,
    "precision": "fp32",
}
FAST = {
    "model": {"name": "fast_net", "widths": [8, 16, 16]},
    "activation": "gelu",
    "optimizer": {"name": "sgd", "lr": 0.2, "momentum": 0.85, "nesterov": True, "weight_decay": 5e-4},
    "scheduler": {"name": "onecycle"},
    "ema_decay": 0.9,
    "tta": True,
}


def cfg(base: dict = BASE, **changes) -> TrainConfig:
    return TrainConfig.model_validate(merge(base, unflatten(changes)))


@pytest.fixture(scope="module")
def small(synthetic_data):
    return make_splits(*synthetic_data, val_size=20, train_size=96, test_size=40, seed=0)


def noise(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


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
    ema = T.WeightAverage(model, 0.9)
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
    restored = T.WeightAverage(model, 0.9)
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


def test_patch_whitening_decorrelates_patches():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 1, 32, 32, generator=g)
    images = torch.cat([base, base + 0.3 * torch.randn(64, 2, 32, 32, generator=g)], 1)  # correlated channels
    layer = PatchWhitening()
    layer.fit(images)
    with torch.no_grad():
        out = layer(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    assert torch.allclose(out.mean(0), torch.zeros(12, dtype=torch.double), atol=1e-3)
    assert torch.allclose(torch.cov(out.T), torch.eye(12, dtype=torch.double), atol=0.02)
    assert not layer.conv.weight.requires_grad and layer.bias.requires_grad


def test_convs_start_as_identities_on_carried_channels():
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(_conv(8, 16)(x)[:, :8], x)


def test_trainer_fits_the_whitening_and_fast_recipe_resumes_exactly(small):
    data = small
    config = cfg(FAST, **{"data": BASE["data"], "epochs": 2, "precision": "fp32"})
    full = T.train(config, data, device="cpu")
    model = create_model("fast_net", activation="gelu", widths=[8, 16, 16])
    model.fit_data(normalize(data.train.images[: T.FIT_SAMPLE], "half"))
    assert torch.allclose(full.model.whiten.conv.weight, model.whiten.conv.weight), "fitted before epoch 1, frozen"
    assert full.summary["params"] < sum(p.numel() for p in model.parameters()), "frozen filters are not trained"
    saved = {}

    def stop_after_first(metrics, checkpoint):
        saved.update(copy.deepcopy(checkpoint()))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train(config, data, device="cpu", on_epoch=stop_after_first)
    assert saved["ema"] is not None
    resumed = T.train(config, data, device="cpu", resume=saved)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert resumed.summary["test_acc"] == full.summary["test_acc"]


def test_cpu_runs_the_first_conv_nchw_and_the_rest_channels_last():
    model = to_device(create_model("baseline_cnn"), cfg(), torch.device("cpu"))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].weight.is_contiguous()
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs[1:])
    assert input_format(cfg(), torch.device("cpu")) == torch.contiguous_format
    assert input_format(cfg(), torch.device("cuda")) == torch.channels_last
    assert input_format(cfg(channels_last=False), torch.device("cuda")) == torch.contiguous_format


NARROW_DOWNSAMPLE = """
import torch
from sweeper.models import create_model
from sweeper.schema.config import TrainConfig
from sweeper.training.device import to_device
cfg = TrainConfig.model_validate({"model": {"name": "resnet_basic", "stem": 4, "widths": [4, 8], "blocks": [1, 1]}, "epochs": 1})
model = to_device(create_model("resnet_basic", stem=4, widths=[4, 8], blocks=[1, 1]), cfg, torch.device("cpu"))
for _ in range(3):
    model(torch.randn(8, 3, 32, 32)).sum().backward()
convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
print("nchw" if all(c.weight.is_contiguous() for c in convs) else "channels_last")
"""


def test_a_conv_narrower_than_8_channels_trains_nchw_on_cpu_without_crashing():
    # oneDNN corrupts memory in this backward under channels_last (a segfault on AVX2 hosts): run it
    # in its own process so a crash fails this test instead of killing the suite.
    done = subprocess.run([sys.executable, "-c", NARROW_DOWNSAMPLE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "nchw"


BUSY = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


def test_auto_threads_leave_the_cores_other_processes_use(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    cpu = torch.device("cpu")
    before = torch.get_num_threads()
    try:
        assert apply_threads("1", cpu) == 1 and torch.get_num_threads() == 1
        hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(cores)]
        try:
            time.sleep(0.5)  # let them get going
            busy = free_cores(0.5)
            assert busy is not None and busy < 0.75, f"{cores} spinning processes left {busy} cores free"
            assert apply_threads("auto", cpu) == 1  # never below one thread
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        # our own work is not "another process": a busy loop here must not read as a busy machine
        assert apply_threads("auto", cpu) >= 1
        assert apply_threads("auto", torch.device("meta")) == torch.get_num_threads()  # not a CPU: untouched
    finally:
        torch.set_num_threads(before)
