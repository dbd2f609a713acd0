"""Activations by name (the catalogue's, or the user's `file.py:Attr`), and swapping them into networks built with nn.ReLU.

A network builder receives `activation` as a factory: calling it gives a fresh module, so every
call site owns its own (a PReLU slope is per module) and a user's activation class fits the
same slot as torch.nn's.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sweeper.catalogue import ACTIVATIONS
from sweeper.errors import UserError
from sweeper.schema.targets import implementation

Activation = Callable[[], nn.Module]


def activation_factory(name: str) -> Activation:
    """What builds a fresh activation module called `name` (inplace=False: analysis hooks differentiate
    through activations, and in-place ops break that)."""
    factory = implementation(ACTIVATIONS, name)
    if not callable(factory):
        raise UserError(f"activation {name!r} is {type(factory).__name__}, not a class or function to call.")
    return factory


def make_activation(name: str) -> nn.Module:
    """A fresh, non-in-place activation module called `name`."""
    module = activation_factory(name)()
    if not isinstance(module, nn.Module):
        raise UserError(f"activation {name!r} gave {type(module).__name__}, not a torch.nn.Module.")
    return module


def swap_relus(model: nn.Module, activation: Activation) -> nn.Module:
    """Replace every nn.ReLU in `model` by a fresh module from `activation`; returns `model`."""
    # Walk parent/child slots rather than model.modules(): a module registered in two slots
    # must become two modules, or a PReLU slope would be shared. ReLUs are swapped for relu
    # too, which drops torchvision's inplace=True.
    for parent in list(model.modules()):
        for slot, child in list(parent.named_children()):
            if type(child) is nn.ReLU:
                setattr(parent, slot, activation())
    return model
