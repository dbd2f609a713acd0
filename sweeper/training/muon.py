"""Muon: momentum SGD whose step for each weight matrix is orthogonalised, as in airbench94_muon.

For a weight W (out x in, or a conv filter bank flattened to out x in*kh*kw) and its momentum
direction G = U S V^T, the step is close to U V^T: every direction the gradient moves the
layer in gets a step of about the same size, so rare directions are not drowned by the few
that dominate the raw gradient. A few Newton-Schulz iterations get there with matmuls alone.

The record also rescales each weight to Frobenius norm sqrt(out) before its step. Every conv it
applies Muon to feeds a BatchNorm, so the scale carries no meaning; fixing it makes `lr` the
relative size of each step and takes the place of weight decay for these weights.

Muon is for matrices only: biases, BatchNorm parameters (and, in the record, the linear head) take
plain momentum SGD. Both live in this one optimizer, told apart by each group's `use_muon`, so a
training loop, a schedule and a checkpoint see one optimizer (as the record's successors do);
training/optim.py makes the record's split (filters, the rest).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

# The quintic p(x) = a*x + b*x^3 + c*x^5 applied to each singular value. Chosen (by the record) for
# the steepest slope at zero rather than convergence to 1: three steps lift singular values from
# 0.018 (of the Frobenius norm) upwards into [0.68, 1.20] instead of all of them onto 1, which
# trains as well as exact orthogonalisation at a fraction of the iterations.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7  # keeps an all-zero gradient from dividing by zero
NS_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def newton_schulz(g: Tensor, steps: int = 3, precision: str = "bf16") -> Tensor:
    """An approximately orthogonal matrix with the 2-D g's singular vectors, in the NS dtype."""
    a, b, c = NS_COEFFS
    # Scaled in float32 so that the largest singular value is at most 1, where p's band starts.
    x = (g.float() / (torch.linalg.matrix_norm(g.float()) + NS_EPS)).to(NS_DTYPES[precision])
    tall = g.size(0) > g.size(1)
    if tall:  # iterate on the wide side: the Gram matrix x @ x.T is then the smaller one
        x = x.T
    # bf16, as the record runs it: the iteration is self-correcting (each step pulls the singular
    # values back into the band, so rounding does not accumulate) and only needs a rough answer,
    # and bf16 keeps float32's exponent range where fp16 could overflow on the Gram products.
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b*A + c*A@A, one kernel
        x = torch.addmm(x, poly, x, beta=a)  # a*X + B@X
    return x.T if tall else x


def orthogonalize(g: Tensor, steps: int = 3, precision: str = "bf16") -> Tensor:
    """Newton-Schulz on g's rows (one per output unit), returned in g's shape, dtype and strides."""
    # .contiguous() first: the rows of a channels_last conv weight are not a view, and flattening
    # the logical order makes a channels_last run compute exactly what a contiguous run computes.
    flat = g.contiguous().view(len(g), -1)
    out = newton_schulz(flat, steps, precision).view(g.shape)
    return torch.empty_like(g).copy_(out)  # empty_like keeps g's memory format


class Muon(torch.optim.Optimizer):
    """Momentum (optionally Nesterov) with Newton-Schulz-orthogonalised steps on >=2-D weights."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.24,
        momentum: float = 0.6,
        nesterov: bool = True,
        ns_steps: int = 3,
        renormalize: bool = True,
        precision: str = "bf16",
        weight_decay: float = 0.0,
        use_muon: bool = True,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Muon: lr must be >= 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Muon: momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("Muon: nesterov needs a momentum > 0")
        if ns_steps < 1:
            raise ValueError(f"Muon: ns_steps must be >= 1, got {ns_steps}")
        if precision not in NS_DTYPES:
            raise ValueError(f"Muon: precision must be one of {', '.join(NS_DTYPES)}, got {precision!r}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            renormalize=renormalize,
            precision=precision,
            weight_decay=weight_decay,  # SGD groups only: renormalisation fixes the Muon weights' scale
            use_muon=use_muon,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; a Muon group (use_muon, the default) must hold matrices or filter banks only."""
        params = param_group["params"]
        if not param_group.get("use_muon", self.defaults["use_muon"]):
            super().add_param_group(param_group)
            return
        if param_group.get("weight_decay", self.defaults["weight_decay"]):
            raise ValueError("Muon renormalises its weights, so weight decay has no effect on a Muon group")
        for p in [params] if isinstance(params, Tensor) else params:
            if p.ndim < 2:
                raise ValueError(
                    f"Muon orthogonalises matrices, but got a {p.ndim}-D parameter of shape {tuple(p.shape)}; "
                    "put biases, BatchNorm parameters and other 1-D parameters in a group with use_muon=False (SGD)."
                )
        super().add_param_group(param_group)

    def _direction(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        """Update p's momentum buffer with grad and return the direction to orthogonalise."""
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        buf = state["momentum_buffer"]
        buf.mul_(group["momentum"]).add_(grad)
        return grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step for every parameter that has a gradient; returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not group["use_muon"]:  # torch.optim.SGD's step: coupled weight decay, then momentum
                    grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                    p.add_(self._direction(p, grad, group), alpha=-group["lr"])
                    continue
                direction = self._direction(p, p.grad, group)
                if group["renormalize"]:
                    # norm of the logical order: same summation as a contiguous weight (see orthogonalize);
                    # a tensor scale, not .item(), so a GPU step never waits on the host
                    norm = torch.linalg.vector_norm(p.contiguous(), dtype=torch.float32)
                    p.mul_(math.sqrt(len(p)) / norm.clamp_min(NS_EPS))
                p.add_(orthogonalize(direction, group["ns_steps"], group["precision"]), alpha=-group["lr"])
        return loss
