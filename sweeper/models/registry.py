"""The model registry: a dict, a decorator and `create_model` (timm's shape)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import TypeVar

from torch import nn

from sweeper.errors import UserError
from sweeper.models.activations import check_activation

MODELS: dict[str, Callable[..., nn.Module]] = {}

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


def register_model(fn: Builder) -> Builder:
    """Register a model builder under its function name."""
    name = fn.__name__
    if name in MODELS:
        # Two families claiming one name would make a spec mean different things per import order.
        raise ValueError(f"model {name!r} is registered twice")
    MODELS[name] = fn
    return fn


def create_model(name: str, *, activation: str = "relu", num_classes: int = 10, **kwargs: object) -> nn.Module:
    """Build the registered model `name` with one activation throughout."""
    builder = MODELS.get(name)
    if builder is None:
        raise UserError(f"unknown model {name!r}. {_suggest(name, MODELS)}")
    check_activation(activation)
    _check_kwargs(name, builder, kwargs)
    return builder(activation=activation, num_classes=num_classes, **kwargs)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (what the reports' "Params" columns count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first Conv2d applied to the image (its weights are the filters one plots)."""
    # Every builder here registers its stem before anything else, so registration order is
    # application order for the first conv; tests check it against a forward hook.
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError(f"{type(model).__name__} has no Conv2d")


def _check_kwargs(name: str, builder: Callable[..., nn.Module], kwargs: dict[str, object]) -> None:
    # A typo in a spec's model block should read as a user error, not a TypeError traceback.
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("activation", "num_classes")]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise UserError(f"model {name!r} takes no argument {unknown[0]!r}; it takes {', '.join(accepted) or 'none'}.")


def _suggest(name: str, choices: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}Known models: {', '.join(sorted(choices))}."
