"""Networks by name: `create_model` builds a catalogue model or the user's own through one door.

Built-in builders also register themselves (`@register_model`) so that tests can hold the
catalogue and the code to each other in both directions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from sweeper.catalogue import MODELS
from sweeper.errors import UserError
from sweeper.models.activations import activation_factory
from sweeper.schema.plugins import check_arguments
from sweeper.schema.targets import implementation

REGISTERED: dict[str, Callable[..., nn.Module]] = {}

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])
SUPPLIED = ("activation", "num_classes")  # what sweeper passes to every network that takes it


def register_model(fn: Builder) -> Builder:
    """Mark a function as a built-in network builder (its name must be in catalogue.MODELS)."""
    if fn.__name__ in REGISTERED:
        # Two families claiming one name would make a spec mean different things per import order.
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    REGISTERED[fn.__name__] = fn
    return fn


def create_model(name: str, *, activation: str = "relu", num_classes: int = 10, **kwargs: object) -> nn.Module:
    """Build model `name` (a catalogue name or `file.py:Attr`) with one activation throughout."""
    builder = implementation(MODELS, name)
    params = _parameters(builder)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    supplied = {"activation": activation_factory(activation), "num_classes": num_classes}
    given = {k: v for k, v in supplied.items() if k in params or takes_any}
    if activation != "relu" and "activation" not in given:
        raise UserError(
            f"model {name!r} takes no `activation` argument, so activation {activation!r} would have no effect."
        )
    problems = check_arguments(builder, kwargs, supplied=tuple(given))
    if problems:
        raise UserError(f"model {name!r}: " + "; ".join(problems))
    model = builder(**given, **kwargs)
    if not isinstance(model, nn.Module):
        raise UserError(f"model {name!r} returned {type(model).__name__}, not a torch.nn.Module.")
    return model


def _parameters(builder: Callable[..., object]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(builder).parameters)
    except (TypeError, ValueError):
        return {}


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
