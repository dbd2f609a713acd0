"""Model registry: parameter counts against the reports, forward/backward, activation swapping."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sweeper.catalogue import ACTIVATIONS, MODELS
from sweeper.errors import UserError
from sweeper.models import count_params, create_model, first_conv, make_activation
from sweeper.schema.config import TrainConfig
from sweeper.training.train import build_model

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Exact ints where the reports (or our own derivation) give every digit; floats are the
# reports' rounded millions.
EXPECTED: dict[str, int | float] = {
    # 3x3 convs with bias + BN: 896+64, 18496+128, 73856+256, 147584+256; 2048*256+256, BN1d 512, 2570
    "baseline_cnn": 769_162,
    # same convs (stem 32, widths 64,128,128), then 128*256+256, BN1d 512, 2570
    "plain_cnn": 277_642,
    "resnet_basic": 1_266_986,  # report 000 Table 2
    "resnet18": 11_173_962,  # report 002: 11.17M
    "resnet50": 23_520_842,  # report 002: 23.52M
    "densenet121": 3.97,  # report 002
    "densenet169": 7.11,  # not in the reports: our measurement, kept as a regression check
    "densenet201": 10.29,  # report 002
    "densenet264": 17.40,  # report 002
    "vgg_a": 9_750_922,  # report 002: 9.76M
    "fast_net": 1_971_352,  # the fast recipe's own network (experiments/fast.yaml): a regression check
}

VARIANTS = [
    ("resnet_basic", {"widths": (128, 128, 256)}, 3_195_306),  # report 000 section 7
    ("vgg_a", {"batch_norm": True}, 9_758_474),  # report 002: VGG-A(BN) 9.76M
]

# Small enough to test all seven activations quickly; no count is checked on these.
SMALL = [("baseline_cnn", {}), ("resnet_basic", {"stem": 8, "widths": (8, 16), "blocks": (1, 2)})]

_cache: dict[str, nn.Module] = {}


def built(name: str) -> nn.Module:
    """Each catalogue model once per session, as a spec gets it: the schema's defaults (what a spec that
    names only the model trains), built under seed 0 (the big ones take a while)."""
    if name not in _cache:
        torch.manual_seed(0)
        config = TrainConfig.model_validate({"model": {"name": name}, "epochs": 1})
        _cache[name] = build_model(config).to(DEVICE)
    return _cache[name]


def images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, device=DEVICE).to(memory_format=torch.channels_last)


def forward_backward(model: nn.Module) -> torch.Tensor:
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(images())
    F.cross_entropy(logits, torch.tensor([0, 1], device=DEVICE)).backward()
    return logits


@contextmanager
def call_counts(model: nn.Module, kind: type[nn.Module]) -> Iterator[Counter[nn.Module]]:
    """Count calls of every `kind` module of `model`, keyed by module, while the block runs."""
    calls: Counter[nn.Module] = Counter()
    hooks = [m.register_forward_hook(lambda m, i, o: calls.update([m])) for m in model.modules() if isinstance(m, kind)]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


@contextmanager
def no_functional_relu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail on any relu reached through torch.nn.functional (how torchvision hides some)."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("F.relu called although another activation was chosen")

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, "relu", forbidden)
        patch.setattr(torch.nn.functional, "relu_", forbidden)
        yield


def assert_finite_grads(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue  # frozen by design (fast_net's patch-whitening layer is set from data, not trained)
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has non-finite gradient"


def test_every_model_has_an_expected_count() -> None:
    assert set(MODELS.names) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(MODELS.names))
def test_param_count(name: str) -> None:
    expected, got = EXPECTED[name], count_params(built(name))
    if isinstance(expected, float):
        assert round(got / 1e6, 2) == expected, got
    else:
        assert got == expected


@pytest.mark.parametrize(("name", "kwargs", "expected"), VARIANTS)
def test_param_count_variants(name: str, kwargs: dict, expected: int) -> None:
    config = TrainConfig.model_validate({"model": {"name": name, **kwargs}, "epochs": 1})
    assert count_params(build_model(config)) == expected


@pytest.mark.train  # a training step of every full-size network: most of a minute on a CPU
@pytest.mark.parametrize("name", sorted(MODELS.names))
def test_forward_backward_channels_last(name: str) -> None:
    model = built(name)
    with call_counts(model, nn.ReLU) as relu_calls:
        logits = forward_backward(model)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    assert_finite_grads(model)
    # One module per call site: none is shared (a shared PReLU would share its slope).
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(relu_calls[m] == 1 for m in relus)
    assert not any(getattr(m, "inplace", False) for m in model.modules())


@pytest.mark.parametrize("name", sorted(MODELS.names))
def test_first_conv_is_the_first_applied(name: str) -> None:
    model = built(name).eval()
    order: list[nn.Module] = []
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks = [m.register_forward_pre_hook(lambda m, i: order.append(m)) for m in convs]
    with torch.no_grad():
        model(images(1))
    for hook in hooks:
        hook.remove()
    assert first_conv(model) is order[0]
    assert first_conv(model).in_channels == 3


@pytest.mark.parametrize("name", ["baseline_cnn", "resnet_basic", "densenet121", "vgg_a"])
def test_same_seed_same_weights(name: str) -> None:
    torch.manual_seed(0)
    again = create_model(name).to(DEVICE)
    for (key, a), b in zip(built(name).state_dict().items(), again.state_dict().values()):
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):  # moved by training
            assert torch.equal(a, b), key


@pytest.mark.parametrize("activation", ACTIVATIONS.names)
@pytest.mark.parametrize(("name", "kwargs"), SMALL)
def test_activation_everywhere(name: str, kwargs: dict, activation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model(name, activation=activation, **kwargs).to(DEVICE)
    kind = type(make_activation(activation))
    assert any(type(m) is kind for m in model.modules())
    if activation != "relu":
        assert not any(isinstance(m, nn.ReLU) for m in model.modules())
        with no_functional_relu(monkeypatch):
            forward_backward(model)
    else:
        forward_backward(model)
    assert_finite_grads(model)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet18", {}),
        ("resnet50", {}),
        ("densenet121", {"growth_rate": 4, "init_features": 8}),  # the final relu is functional upstream
        ("vgg_a", {"batch_norm": True}),
        ("plain_cnn", {}),
    ],
)
def test_prelu_reaches_every_call_site(name: str, kwargs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model(name, activation="prelu", **kwargs).to(DEVICE)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    with no_functional_relu(monkeypatch), call_counts(model, nn.PReLU) as calls:
        forward_backward(model)
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert prelus and all(calls[m] == 1 and m.weight.numel() == 1 for m in prelus)
    assert_finite_grads(model)


def test_resnet_basic_prelu_slopes() -> None:
    # stem + 2 per BasicBlock x 6 blocks: 13 slopes, each its own parameter.
    plain = count_params(create_model("resnet_basic"))
    assert count_params(create_model("resnet_basic", activation="prelu")) == plain + 13


def test_leaky_relu_slope() -> None:
    assert make_activation("leaky_relu").negative_slope == 0.01


def test_unknown_model_suggests_close_name() -> None:
    with pytest.raises(UserError, match="resnet18"):
        create_model("resnet_18")


def test_unknown_activation_and_argument_are_user_errors() -> None:
    with pytest.raises(UserError, match="gelu"):
        create_model("baseline_cnn", activation="gelue")
    with pytest.raises(UserError, match="widths"):
        create_model("resnet_basic", width=(8, 16))
