"""Dotted override paths over a nested config: `optimizer.lr: 0.1` in a row is `{"optimizer": {"lr": 0.1}}`
merged into the base, and a config flattens back to the dotted names that MLflow params and table columns use."""

from __future__ import annotations

from typing import Any

from sweeper.schema.plugins import is_reference

# Fields whose value is "one of several kinds": switching the kind replaces the whole block.
KIND_FIELDS = ("model", "scheduler")
# Flat blocks of built-ins that may also name the user's code: a switch to or from that code replaces the block
# (the user's keyword arguments mean nothing to a built-in, nor `momentum` to the user's class).
CODE_FIELDS = ("optimizer", "loss")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted.key: value}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def unflatten(overrides: dict[str, Any]) -> dict[str, Any]:
    """{dotted.key: value} (or nested dicts, or a mix) -> nested dict."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"'{key}' sets a field inside '{part}', which is not a block")
        if isinstance(value, dict):
            value = unflatten(value)
            if isinstance(node.get(leaf), dict):
                value = merge(node[leaf], value)
        node[leaf] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """Deep-merge override into base; a new `name` in a kind field, or one to or from the user's code in an
    optimizer or loss block, replaces that block whole."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            before, after = old.get("name"), value.get("name", old.get("name"))
            renamed = top and after != before
            code = key in CODE_FIELDS and (is_reference(before) or is_reference(after))
            new_kind = renamed and (key in KIND_FIELDS or code)
            out[key] = dict(value) if new_kind else merge(old, value, top=False)
        else:
            out[key] = value
    return out
