"""Muon (sweeper.training.muon): the Newton-Schulz band, memory formats, state round trip, descent."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from sweeper.training.muon import NS_COEFFS, Muon, newton_schulz, orthogonalize
from sweeper.training.optim import parameter_groups


def _quintic_band() -> tuple[float, float]:
    """(min, max) of p(x) = a x + b x^3 + c x^5 at its two positive critical points: the band it keeps."""
    a, b, c = NS_COEFFS
    root = math.sqrt(9 * b * b - 20 * a * c)
    crit = [math.sqrt((-3 * b + s * root) / (10 * c)) for s in (-1, 1)]
    values = [a * x + b * x**3 + c * x**5 for x in crit]
    return min(values), max(values)


def _with_singular_values(rows: int, cols: int, values: torch.Tensor, gen: torch.Generator):
    u, _ = torch.linalg.qr(torch.randn(rows, len(values), generator=gen))
    v, _ = torch.linalg.qr(torch.randn(cols, len(values), generator=gen))
    return u, v, u @ torch.diag(values) @ v.T


def test_quintic_band_numbers() -> None:
    lo, hi = _quintic_band()
    assert lo == pytest.approx(0.6818, abs=1e-4) and hi == pytest.approx(1.2024, abs=1e-4)


@pytest.mark.parametrize("shape", [(24, 72), (72, 24)])  # wide, and tall (iterated transposed)
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-3), ("bf16", 0.03)])
def test_newton_schulz_lands_in_band(shape: tuple[int, int], precision: str, tol: float) -> None:
    gen = torch.Generator().manual_seed(0)
    sigma = torch.logspace(0, -1.3, 24)  # 1 down to 0.05: a spread the raw gradient would keep
    u, v, g = _with_singular_values(*shape, sigma, gen)
    g = 7.3 * g  # scale must not matter
    assert (sigma.min() / sigma.norm()).item() > 0.018  # three steps lift everything above this
    out = newton_schulz(g, steps=3, precision=precision).float()
    assert out.shape == g.shape
    s = torch.linalg.svdvals(out)
    lo, hi = _quintic_band()
    assert s.min().item() >= lo - tol and s.max().item() <= hi + tol
    inner = u.T @ out @ v  # singular vectors are kept: the update is diagonal in g's own basis
    assert (inner - torch.diag(torch.diagonal(inner))).abs().max().item() < 2 * tol


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_update_keeps_shape_and_strides(fmt: torch.memory_format) -> None:
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(16, 8, 3, 3).contiguous(memory_format=fmt))
    p.grad = torch.randn(16, 8, 3, 3).contiguous(memory_format=fmt)
    update = orthogonalize(p.grad)
    assert update.shape == p.shape and update.stride() == p.stride() and update.dtype == p.dtype
    strides = p.stride()
    opt = Muon([p])
    opt.step()
    assert p.stride() == strides and opt.state[p]["momentum_buffer"].stride() == strides


def test_channels_last_matches_contiguous_bit_for_bit() -> None:
    torch.manual_seed(0)
    weight, grads = torch.randn(32, 16, 3, 3), [torch.randn(32, 16, 3, 3) for _ in range(3)]
    a = nn.Parameter(weight.clone())
    b = nn.Parameter(weight.clone().contiguous(memory_format=torch.channels_last))
    opt_a, opt_b = Muon([a]), Muon([b])
    for g in grads:
        a.grad, b.grad = g.clone(), g.clone().contiguous(memory_format=torch.channels_last)
        opt_a.step()
        opt_b.step()
    assert b.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)


def _tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip


def test_state_dict_round_trip_continues_identically() -> None:
    torch.manual_seed(0)
    model = _tiny_net()
    muon_params = parameter_groups(model)["filters"]
    opt = Muon(muon_params, lr=0.1, momentum=0.8)
    grads = [[torch.randn_like(p) for p in muon_params] for _ in range(4)]

    def step(params: list[nn.Parameter], optimizer: Muon, gs: list[torch.Tensor]) -> None:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        optimizer.step()

    for gs in grads[:2]:
        step(muon_params, opt, gs)
    opt.param_groups[0]["lr"] = 0.05  # as a schedule would have left it
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    clone = copy.deepcopy(model)
    clone_params = parameter_groups(clone)["filters"]
    restored = Muon(clone_params)  # other defaults: the loaded state must bring its own
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.param_groups[0]["lr"] == 0.05 and restored.param_groups[0]["momentum"] == 0.8
    for gs in grads[2:]:
        step(muon_params, opt, gs)
        step(clone_params, restored, gs)
    for p, q in zip(muon_params, clone_params):
        assert torch.equal(p, q)


def _losses(muon_lr: float, steps: int = 20) -> list[float]:
    torch.manual_seed(0)
    model = _tiny_net()
    x, y = torch.randn(64, 3, 8, 8), torch.randint(0, 4, (64,))
    groups = parameter_groups(model)
    muon_params, other = groups.pop("filters"), [p for params in groups.values() for p in params]
    assert len(muon_params) == 2  # the two convs; the linear head and BatchNorm go to SGD
    optimizers = [Muon(muon_params, lr=muon_lr), torch.optim.SGD(other, lr=0.1, momentum=0.85, nesterov=True)]
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        for opt in optimizers:
            opt.zero_grad()
        loss.backward()
        for opt in optimizers:
            opt.step()
    return losses


def test_few_steps_reduce_loss_of_tiny_conv_net() -> None:
    muon, control = _losses(0.24), _losses(0.0)  # control: the convs frozen, only SGD's part learns
    assert muon[-1] < 0.75 * muon[0]  # about 0.57 on our CPU
    assert control[-1] > 0.9 * control[0]  # about 0.99: the descent above is Muon's


def test_refuses_one_dimensional_params() -> None:
    with pytest.raises(ValueError, match="use_muon=False"):
        Muon([nn.Parameter(torch.zeros(8))])
    opt = Muon([nn.Parameter(torch.zeros(4, 4))])
    with pytest.raises(ValueError, match="BatchNorm"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(4))]})


def test_step_follows_the_record() -> None:
    torch.manual_seed(0)
    w, g1, g2 = torch.randn(8, 4, 3, 3), torch.randn(8, 4, 3, 3), torch.randn(8, 4, 3, 3)
    p = nn.Parameter(w.clone())
    opt = Muon([p], lr=0.1, momentum=0.6, nesterov=True)
    for g in (g1, g2):
        p.grad = g.clone()
        opt.step()

    def renorm(t: torch.Tensor) -> torch.Tensor:  # Frobenius norm sqrt(out channels), before each step
        return t * (math.sqrt(len(t)) / t.norm())

    expected = renorm(w) - 0.1 * orthogonalize(g1 + 0.6 * g1)  # buffer = g1; Nesterov: g + m * buffer
    buf = 0.6 * g1 + g2
    expected = renorm(expected) - 0.1 * orthogonalize(g2 + 0.6 * buf)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-6)


def test_sgd_groups_step_as_torch_sgd_does():
    torch.manual_seed(0)
    bias = torch.nn.Parameter(torch.randn(8))
    twin = torch.nn.Parameter(bias.detach().clone())
    ours = Muon([{"params": [bias], "use_muon": False, "weight_decay": 0.01}], lr=0.1, momentum=0.85, nesterov=True)
    ref = torch.optim.SGD([twin], lr=0.1, momentum=0.85, nesterov=True, weight_decay=0.01)
    for _ in range(3):
        grad = torch.randn(8)
        bias.grad, twin.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
    assert torch.allclose(bias, twin, atol=1e-7)
    with pytest.raises(ValueError, match="weight decay has no effect"):
        Muon([torch.nn.Parameter(torch.randn(4, 4))], weight_decay=0.1)
