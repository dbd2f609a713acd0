"""sweeper.analysis: probe arithmetic against closed forms, a probe that leaves training untouched,
filter normalisation, loss surfaces, bands, filters, and the quick BN spec end to end."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient
from rich.console import Console
from torch import nn

from sweeper.analysis.curves import band
from sweeper.analysis.filters import feature_maps, feature_maps_image, filters_image, first_layer_filters
from sweeper.analysis.landscape import evaluate_at, loss_surface, random_direction, surface_cost
from sweeper.schema.config import TrainConfig
from sweeper.training.probes import make_step_hook, probe
from sweeper.training.recipe import loss_fn
from sweeper.training.train import Step

REPO = Path(__file__).resolve().parents[2]


class Vector(nn.Module):
    """A model whose output is its own weight vector: the loss defines the landscape."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def test_probe_matches_the_closed_form_on_a_quadratic():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    w = torch.randn(6, generator=gen, dtype=torch.float64)
    steps = [1e-3, 0.01, 0.1, 0.3]
    result = probe(
        Vector(w),
        torch.zeros(1, 1, dtype=torch.float64),
        torch.zeros(1),
        lambda out, y, model: 0.5 * out @ a @ out,
        steps,
    )

    g = a @ w
    # the gradient at w - s g is A(w - s g) = g - s A g: distance s ||A g||, ratio ||A g|| / ||g||
    direct = [0.5 * (w - s * g) @ a @ (w - s * g) for s in steps]
    np.testing.assert_allclose(result.losses, [float(v) for v in direct], rtol=1e-12)
    np.testing.assert_allclose(result.grad_dists, [s * float(torch.linalg.norm(a @ g)) for s in steps], rtol=1e-10)
    assert result.grad_norm == pytest.approx(float(torch.linalg.norm(g)), rel=1e-12)
    assert result.loss0 == pytest.approx(float(0.5 * w @ a @ w), rel=1e-12)
    metrics = result.metrics()
    assert metrics["beta_smooth"] == pytest.approx(float(torch.linalg.norm(a @ g) / torch.linalg.norm(g)), rel=1e-10)
    assert metrics["probe_loss_min"] == pytest.approx(min(float(v) for v in direct), rel=1e-12)
    assert metrics["probe_loss_max"] == pytest.approx(max(float(v) for v in direct), rel=1e-12)
    assert metrics["grad_pred_max"] == pytest.approx(0.3 * float(torch.linalg.norm(a @ g)), rel=1e-10)


def test_a_weight_penalty_in_the_criterion_sees_the_probed_weights():
    # loss = 0.5 ||w||^2 read through model.parameters(): g = w, L(w - s g) = 0.5 (1 - s)^2 ||w||^2
    w = torch.tensor([3.0, -4.0], dtype=torch.float64)
    criterion = lambda out, y, model: 0.5 * sum(p.pow(2).sum() for p in model.parameters())  # noqa: E731
    result = probe(Vector(w), torch.zeros(1, dtype=torch.float64), torch.zeros(1), criterion, [0.5, 2.0])
    np.testing.assert_allclose(result.losses, [0.5 * 0.25 * 25, 0.5 * 1.0 * 25], rtol=1e-12)
    np.testing.assert_allclose(result.grad_dists, [0.5 * 5, 2.0 * 5], rtol=1e-12)


def _bn_config(**probe: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": {"name": "plain_cnn", "stem": 4, "widths": [8], "hidden": 8, "dropout": 0.3},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "loss": {"penalty": "l2"},
            "epochs": 1,
            "probe": {"every": 1, "etas": [0.5, 1.0, 4.0], **probe},
        }
    )


def _state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return {
        "model": copy.deepcopy(model.state_dict()),
        "grads": [p.grad.clone() for p in model.parameters()],
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "rng": torch.get_rng_state(),
        "training": model.training,
    }


def _same(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key  # BN running stats and num_batches_tracked too
    assert all(torch.equal(x, y) for x, y in zip(a["grads"], b["grads"]))
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(a["rng"], b["rng"]) and a["training"] == b["training"]


def test_the_probe_hook_leaves_weights_buffers_optimizer_and_rng_bit_identical():
    from sweeper.training.optim import build_optimizer
    from sweeper.training.train import build_model

    cfg = _bn_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) and model.training
    twin = copy.deepcopy(model)
    optimizer, twin_opt = build_optimizer(cfg, model), build_optimizer(cfg, twin)
    criterion = loss_fn(cfg)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    logged: list[tuple[dict, int]] = []
    hook = make_step_hook(cfg, lambda metrics, step: logged.append((metrics, step)))
    for step in (1, 2):  # the second step has momentum buffers in the optimizer state
        for net, opt in ((model, optimizer), (twin, twin_opt)):
            torch.manual_seed(step)
            loss = criterion(net(x), y, net)
            opt.zero_grad()
            loss.backward()
            if net is model:
                before = _state(model, optimizer)
                hook(
                    Step(
                        step,
                        1,
                        loss.detach(),
                        x,
                        y,
                        model,
                        optimizer,
                        criterion,
                        lambda: torch.autocast("cpu", enabled=False),
                    )
                )
                _same(before, _state(model, optimizer))
            opt.step()
    # and training goes on exactly as without the probe
    for p, q in zip(model.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(p, q)
    assert [s for _, s in logged] == [1, 2]
    metrics = logged[-1][0]
    assert {"step_loss", "probe_loss_min", "probe_loss_max", "grad_pred_min", "grad_pred_max", "beta_smooth"} <= set(
        metrics
    )
    assert metrics["probe_loss_min"] <= metrics["probe_loss_max"] and metrics["beta_smooth"] > 0
    assert make_step_hook(TrainConfig.model_validate({"model": {"name": "vgg_a"}, "epochs": 1}), print) is None


def test_a_config_without_probe_hashes_as_before():
    from sweeper.schema.ids import config_hash, id_view

    plain = TrainConfig.model_validate({"model": {"name": "vgg_a"}, "epochs": 1})
    assert "probe" not in id_view(plain)
    probed = TrainConfig.model_validate({"model": {"name": "vgg_a"}, "epochs": 1, "probe": {"every": 5}})
    assert probed.model_dump(mode="json")["probe"]["every"] == 5 and config_hash(plain) != config_hash(probed)


def test_filter_normalised_directions():
    from sweeper.models import create_model

    model = create_model("baseline_cnn")  # convolutions, BatchNorm 2d and 1d, linear layers
    d = random_direction(model, torch.Generator().manual_seed(1))
    again = random_direction(model, torch.Generator().manual_seed(1))
    other = random_direction(model, torch.Generator().manual_seed(2))
    for name, p in model.named_parameters():
        assert d[name].shape == p.shape and torch.equal(d[name], again[name])
        if p.ndim <= 1:  # BatchNorm weights and biases, every bias
            assert not d[name].any(), name
        else:
            dims = tuple(range(1, p.ndim))
            norm = torch.linalg.vector_norm
            torch.testing.assert_close(norm(d[name], dim=dims), norm(p.detach(), dim=dims), rtol=1e-5, atol=1e-7)
            assert not torch.equal(d[name], other[name])


def test_loss_surface_centre_and_points_are_the_loss_at_those_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    model(torch.randn(16, 3, 32, 32))  # give BatchNorm non-trivial running statistics
    x, y = torch.randn(20, 3, 32, 32), torch.arange(20) % 10
    gen = torch.Generator().manual_seed(0)
    dirs = (random_direction(model, gen), random_direction(model, gen))
    calls = []
    surface = loss_surface(model, dirs, x, y, grid=3, span=0.5, batch=7, on_point=lambda: calls.append(1))
    assert surface.loss.shape == (3, 3) and len(calls) == 9 and model.training
    model.eval()
    with torch.no_grad():
        centre = nn.functional.cross_entropy(model(x), y).item()
    assert surface.loss[1, 1] == pytest.approx(centre, rel=1e-5)
    corner = {k: p.detach() + 0.5 * dirs[0][k] - 0.5 * dirs[1][k] for k, p in model.named_parameters()}
    moved = copy.deepcopy(model)
    moved.load_state_dict({**model.state_dict(), **corner})
    with torch.no_grad():
        assert surface.loss[0, 2] == pytest.approx(nn.functional.cross_entropy(moved(x), y).item(), rel=1e-5)
    assert evaluate_at(model, {}, x, y, 100)[0] == pytest.approx(centre, rel=1e-5)
    cost = surface_cost(21, 1000, 500, checkpoints=2)
    assert (cost.points, cost.images, cost.forward_images, cost.batches) == (882, 1000, 882_000, 1764)


def test_band_is_min_and_max_over_runs_per_step():
    runs = [[(1, 2.0), (2, 1.0), (3, 0.5)], [(1, 3.0), (2, 0.5)], [(1, 2.5), (2, 2.0), (3, 1.5)]]
    b = band("g", runs)
    assert b.steps.tolist() == [1, 2, 3] and b.runs == 3
    assert b.low.tolist() == [2.0, 0.5, 0.5] and b.high.tolist() == [3.0, 2.0, 1.5]
    assert b.mid.tolist() == [2.5, 1.0, 1.0]
    smoothed = band("g", [[(1, 2.0), (2, 4.0), (3, 0.0)]], window=2)
    assert smoothed.low.tolist() == [2.0, 3.0, 2.0]


def test_first_layer_filters_and_feature_maps():
    from sweeper.models import create_model
    from sweeper.training.augment import normalize
    from sweeper.training.data import synthetic

    model = create_model("vgg_a", batch_norm=True).train()
    weights = first_layer_filters(model)
    assert weights.shape == (64, 3, 3, 3) and np.array_equal(weights, model[0][0].weight.detach().numpy())
    image = synthetic(4, 2)[0].images[0]
    seen = {}
    model.eval()
    model[0][0].register_forward_hook(lambda m, i, o: seen.setdefault("out", o.detach()))
    with torch.no_grad():
        model(normalize(image[None], "cifar10"))
    maps = feature_maps(model.train(), image.numpy(), "cifar10")
    assert maps.shape == (64, 32, 32) and model.training
    np.testing.assert_allclose(maps, seen["out"][0].numpy(), rtol=1e-5, atol=1e-6)
    # 64 kernels on an 8 x 8 grid, 65 tiles (the input first) on 9 x 8: PNGs drawn without a browser
    rgb, gray, fmap = (
        filters_image(weights),
        filters_image(weights, grayscale=True),
        feature_maps_image(maps, image.numpy()),
    )
    assert rgb.mode == gray.mode == fmap.mode == "RGB" and rgb.size == gray.size and fmap.size[0] > rgb.size[0]
    pixels = np.asarray(gray)
    assert (pixels[..., 0] == pixels[..., 1]).all() and not (np.asarray(rgb)[..., 0] == np.asarray(rgb)[..., 1]).all()


@pytest.mark.train
def test_quick_bn_spec_end_to_end(tmp_path, store_uri, synthetic_data, data_dir):
    from sweeper import sweep
    from sweeper.analysis.study import bn_study, load_sweep
    from sweeper.analysis.trained import filters_study, landscape_study, model_at, pick_run

    spec = yaml.safe_load((REPO / "experiments/bn_landscape_002.yaml").read_text())
    # VGG-A is the point of the spec and costs a second per step here: one lr per model, 3 steps, 2 probes
    spec["rows"] = [r for r in spec["rows"] if r["optimizer.lr"] == 1e-4]
    spec["profiles"]["quick"].update(
        {
            "data.train_size": 24,
            "data.val_size": 10,
            "data.test_size": 10,
            "data.batch_size": 8,
            "epochs": 1,
            "probe.every": 2,
            "probe.etas": [1.0, 100.0],
        }
    )
    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    report = sweep.run(
        path, "quick", tracking_uri=store_uri, device="cpu", data=synthetic_data, console=Console(quiet=True)
    )
    assert len(report.finished) == 2, report.failed

    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("bn_landscape_002")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("sweeper.role") == "sweep")
    cell = next(r for r in runs if r.data.tags.get("sweeper.role") == "cell")
    assert sorted(m.step for m in client.get_metric_history(cell.info.run_id, "step_loss")) == [1, 2, 3]
    assert sorted(m.step for m in client.get_metric_history(cell.info.run_id, "beta_smooth")) == [1, 3]

    logged = bn_study("bn_landscape_002", "quick", store_uri)
    names = {Path(p).name for p in logged}
    assert {"loss_band.html", "probe_loss_range.html", "probe_grad_pred.html", "probe_beta_smooth.html"} <= names
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "figures/bn")} >= {
        f"figures/bn/{n}" for n in names
    }

    row = "VGG-A(BN) lr=1e-4"
    saved = tmp_path / "w.pt"
    sweep_runs = load_sweep("bn_landscape_002", "quick", store_uri)
    torch.save({"model": model_at(pick_run(sweep_runs, row)[0], None, torch.device("cpu"), "init").state_dict()}, saved)
    logged = landscape_study(
        "bn_landscape_002",
        row,
        ["init", "last", str(saved)],
        grid=2,
        subset=8,
        batch=8,
        profile="quick",
        tracking_uri=store_uri,
        device="cpu",
        console=Console(quiet=True),
    )
    row_run = next(r for r in runs if r.data.tags.get("sweeper.row") == row)
    stored = {a.path for a in client.list_artifacts(row_run.info.run_id, "figures/landscape")}
    assert set(logged) <= stored and any(p.endswith(".npz") for p in logged)
    local = Path(
        client.download_artifacts(row_run.info.run_id, next(p for p in logged if p.endswith(".npz")), str(tmp_path))
    )
    surfaces = np.load(local)
    np.testing.assert_allclose(surfaces["loss_init"], surfaces["loss_w"])  # the saved file holds the initial weights
    assert not np.allclose(surfaces["loss_init"], surfaces["loss_last"])  # the run's checkpoints/last.pt: trained

    logged = filters_study("bn_landscape_002", row, "init", profile="quick", tracking_uri=store_uri)
    stored = {a.path for a in client.list_artifacts(row_run.info.run_id, "figures/filters")}
    assert len(logged) >= 3 and set(logged) <= stored
