"""fast_net: the patch-whitening stem, identity-initialised convs, and the fast recipe resuming exactly."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import BASE, cfg

from sweeper.models import create_model
from sweeper.models.fast import PatchWhitening, _conv
from sweeper.training import train as T
from sweeper.training.augment import normalize

FAST = {
    "model": {"name": "fast_net", "widths": [8, 16, 16]},
    "activation": "gelu",
    "optimizer": {"name": "sgd", "lr": 0.2, "momentum": 0.85, "nesterov": True, "weight_decay": 5e-4},
    "scheduler": {"name": "onecycle"},
    "ema_decay": 0.9,
    "tta": True,
}


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
