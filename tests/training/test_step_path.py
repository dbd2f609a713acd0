"""The GPU never waits: a training step's data path creates no tensor off the training device and reads
nothing back to the host; EMA and penalties are foreach kernels; the run page shows system metrics;
a quick sweep with `strong` augmentation trains end to end."""

from __future__ import annotations

import copy

import pytest
import torch
from mlflow import MlflowClient
from torch.utils._python_dispatch import TorchDispatchMode

from sweeper.catalogue import AUGMENTS
from sweeper.schema.config import TrainConfig
from sweeper.schema.dotted import merge, unflatten
from sweeper.training.batches import epoch_batches
from sweeper.training.recipe import WeightAverage, loss_fn

BASE = {
    "model": {"name": "plain_cnn", "stem": 8, "widths": [16], "hidden": 16},
    "data": {"augment": "strong", "batch_size": 16, "val_size": 20, "train_size": 64, "test_size": 20},
    "epochs": 1,
    "precision": "fp32",
}


class Created(TorchDispatchMode):
    """Records the device of every tensor an op returns, and every op that reads a value back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default):
            self.reads.append(str(func))
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.devices.add(t.device.type)
        return out


@pytest.mark.parametrize("preset", AUGMENTS.names)
def test_a_steps_batch_is_made_on_the_training_device_without_reading_back(preset):
    # `meta` stands in for a GPU: a tensor made on the CPU inside a step would show as "cpu", and any
    # read back to the host (.item(), nonzero, a boolean mask) fails or shows as a read.
    config = TrainConfig.model_validate(merge(BASE, unflatten({"data.augment": preset})))
    images = torch.empty(64, 3, 32, 32, dtype=torch.uint8, device="meta")
    labels = torch.empty(64, dtype=torch.long, device="meta")
    batches = epoch_batches(config, images, labels, torch.Generator().manual_seed(0), 4, torch.channels_last)
    next(batches)  # the epoch's order and plan: drawn on the CPU, copied once
    with Created() as seen:
        for x, y in batches:
            assert x.device.type == y.device.type == "meta" and x.is_contiguous(memory_format=torch.channels_last)
    assert seen.devices == {"meta"}, f"a step made tensors on {seen.devices - {'meta'}}"
    assert not seen.reads


def test_ema_and_penalty_match_the_per_tensor_loops_they_replace():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)
    )
    ema = WeightAverage(model, 0.9)
    reference = copy.deepcopy(model)
    for step in range(1, 4):
        model(torch.randn(8, 3, 8, 8))  # moves BatchNorm statistics and the batch count
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        keep = min(0.9, step / (step + 9))
        for mine, current in zip(reference.state_dict().values(), model.state_dict().values()):
            mine.lerp_(current, 1 - keep) if mine.is_floating_point() else mine.copy_(current)
    for a, b in zip(ema.module.state_dict().values(), reference.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    for penalty, norm in (("l1", lambda p: p.abs().sum()), ("l2", lambda p: p.pow(2).sum())):
        config = TrainConfig.model_validate({**BASE, "loss": {"penalty": penalty, "penalty_weight": 0.1}})
        logits, target = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
        expected = torch.nn.functional.cross_entropy(logits, target) + 0.1 * sum(
            norm(p) for p in model.parameters() if p.ndim > 1
        )
        assert torch.allclose(loss_fn(config)(logits, target, model), expected)


def test_a_quick_strong_sweep_trains_and_its_runs_show_system_metrics(write_spec, data_dir, tmp_path, monkeypatch):
    from sweeper.sweep import run

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    base = {**BASE, "data": {**BASE["data"], "train_size": 200}, "epochs": 3}
    path = write_spec(base=base, rows=[{"label": "strong"}, {"label": "autoaugment", "data.augment": "autoaugment"}])
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    report = run(path, tracking_uri=uri, device="cpu")
    assert len(report.finished) == 2 and not report.failed
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.`sweeper.role` = 'cell'")
    for r in runs:
        assert r.info.status == "FINISHED"
        assert "system/cpu_utilization_percentage" in r.data.metrics, sorted(r.data.metrics)
        assert "system/system_memory_usage_megabytes" in r.data.metrics
