"""A spec's own code, checked when the spec is loaded: each `file.py:Attr` it names is imported (so
loading such a spec runs that code) and its arguments are held against its signature, so a bad
path, a failing import or an unknown argument is a spec error with file:line, before anything runs.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

from sweeper.schema import plugins
from sweeper.schema.config import TrainConfig

Problem = tuple[tuple, str]  # (location in the config, message)
MODEL_SUPPLIED = ("activation", "num_classes")  # what sweeper passes a network that takes it


def references(config: TrainConfig) -> dict[tuple, str]:
    """{location of the name in the config: reference} for every piece of the user's code a config names."""
    named = {
        ("model", "name"): config.model.name,
        ("activation",): config.activation,
        ("loss", "name"): config.loss.name,
        ("optimizer", "name"): config.optimizer.name,
    }
    return {loc: ref for loc, ref in named.items() if plugins.is_reference(ref)}


def _accepts(obj: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """The names among `names` that `obj` takes as keywords (all of them with **kwargs)."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return names
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return names
    return tuple(n for n in names if n in params)


def _calls(config: TrainConfig, block: str, obj: Any) -> list[str]:
    """How sweeper will call the user's object for `block`, checked against its signature."""
    if block == "model":
        takes = _accepts(obj, MODEL_SUPPLIED)
        problems = plugins.check_arguments(obj, dict(config.model.model_extra or {}), supplied=takes)
        if config.activation != "relu" and "activation" not in takes:
            problems.append(f"it takes no `activation`, so activation '{config.activation}' would have no effect")
        return problems
    if block == "activation":
        return plugins.check_arguments(obj, {})
    extra = dict(getattr(config, block).model_extra or {})
    if block == "loss" and not isinstance(obj, type):  # f(logits, target, **args)
        return plugins.check_arguments(functools.partial(obj, None, None), extra)
    if block == "optimizer":  # Cls(params, lr=..., weight_decay=..., **args)
        return plugins.check_arguments(functools.partial(obj, None), extra, supplied=("lr", "weight_decay"))
    return plugins.check_arguments(obj, extra)


def check(config: TrainConfig, base_dir: Path) -> list[Problem]:
    """Load every reference of a config (registering it for the run) and check how it will be called."""
    out: list[Problem] = []
    for loc, reference in references(config).items():
        try:
            loaded = plugins.load(reference, base_dir.resolve())
        except plugins.PluginError as exc:
            out.append((loc, str(exc)))
            continue
        plugins.register(loaded)
        out += [(loc, f"`{reference}`: {p}") for p in _calls(config, loc[0], loaded.obj)]
    return out
