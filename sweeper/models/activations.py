"""Activation functions by name, and swapping them into networks built with nn.ReLU."""

from __future__ import annotations

import difflib

from torch import nn

from sweeper.errors import UserError

ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "elu", "gelu", "silu", "mish", "prelu")

# inplace=False everywhere: analysis code (loss surfaces, feature maps) hooks activations and
# differentiates through them, and in-place ops break both.
_BUILDERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01, PyTorch's default
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "prelu": nn.PReLU,  # one learned slope per module instance, as in the report's PReLU row
}


def check_activation(name: str) -> None:
    """Raise UserError unless `name` is one of ACTIVATIONS."""
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, ACTIVATIONS, n=2, cutoff=0.5)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UserError(f"unknown activation {name!r}. {hint}Known: {', '.join(ACTIVATIONS)}.")


def make_activation(name: str) -> nn.Module:
    """A fresh, non-in-place activation module called `name`."""
    check_activation(name)
    return _BUILDERS[name]()


def swap_relus(model: nn.Module, activation: str) -> nn.Module:
    """Replace every nn.ReLU in `model` by a fresh `activation` module; returns `model`."""
    check_activation(activation)
    # Walk parent/child slots rather than model.modules(): a module registered in two slots
    # must become two modules, or a PReLU slope would be shared. ReLUs are swapped for relu
    # too, which drops torchvision's inplace=True.
    for parent in list(model.modules()):
        for slot, child in list(parent.named_children()):
            if type(child) is nn.ReLU:
                setattr(parent, slot, make_activation(activation))
    return model
