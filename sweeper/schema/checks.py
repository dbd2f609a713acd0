"""Checks beyond types and ranges: settings with no effect, table keys nothing logs, key suggestions.

Each returns problems as data ((dotted key, message) pairs); spec.py turns them into file:line text.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from sweeper.catalogue import LOSSES, OPTIMIZERS, PENALTIES, Kind, metric_names
from sweeper.errors import did_you_mean
from sweeper.schema.config import TrainConfig
from sweeper.schema.dotted import flatten
from sweeper.schema.fields import fields_at, members

# (block, the field in it that names a choice, the catalogue of that choice): each entry's `uses`
# says which settings of the block it reads. A non-default value of a setting the chosen entry does
# not read changes the cell id but not the training, so two "different" cells would be one experiment.
CHOICE_FIELDS: tuple[tuple[str, str, Kind[Any]], ...] = (
    ("optimizer", "name", OPTIMIZERS),
    ("loss", "name", LOSSES),
    ("loss", "penalty", PENALTIES),
)


def inert_settings(config: TrainConfig) -> list[tuple[str, str]]:
    """(dotted key, message) for each setting changed from its default that this config never uses.

    The default and 0 (off) pass: shipped specs spell them out, and their cell ids must not change.
    A block naming the user's code is left to its signature check.
    """
    out = []
    for block_name, field, kind in CHOICE_FIELDS:
        block = getattr(config, block_name)
        chosen = getattr(block, field)
        if chosen not in kind:
            continue
        for knob in sorted(set().union(*(e.uses for e in kind)) - kind.get(chosen).uses):
            value, default = getattr(block, knob, None), type(block).model_fields.get(knob)
            if default is None or value in (default.default, 0):
                continue
            users = " or ".join(e.name for e in kind if knob in e.uses)
            key = f"{block_name}.{knob}"
            out.append((key, f"{key}={value} has no effect here: only {kind.key} {users} uses it. Remove it "
                        "(or set it where it applies)"))  # fmt: skip
    return out


def config_keys(config: TrainConfig) -> set[str]:
    """Every dotted key of a config, including those its dump omits at their defaults."""
    keys: set[str] = set()

    def walk(model: BaseModel, prefix: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{prefix}{name}.")
            else:
                keys.add(f"{prefix}{name}")

    walk(config, "")
    return keys


def known_metrics(configs: list[TrainConfig]) -> list[str]:
    """Metrics a run of these configs logs: the trainer's, plus the probes' when a config has a probe block."""
    probes = any(c.probe is not None for c in configs)
    return list(metric_names("epoch", "summary", *(["probe"] if probes else [])))


def table_problems(columns: list[str], metrics: list[str], configs: list[TrainConfig]) -> list[tuple[tuple, str]]:
    """(location, message) for table keys that no cell has or no run logs (they would print n/a forever)."""
    keys = {"label", "row"} | {k for c in configs for k in config_keys(c)}
    logged = known_metrics(configs)
    probe_only = "" if any(c.probe for c in configs) else " (probe metrics need a `probe:` block in base)"
    out: list[tuple[tuple, str]] = []
    for i, key in enumerate(columns):
        if key.startswith("metrics."):
            if key.removeprefix("metrics.") not in logged:
                out.append((("table", "columns", i, "key"), _unknown(key, [f"metrics.{m}" for m in logged], "metric")))
        elif key not in keys and configs:  # without a valid cell, the config keys are unknown
            out.append(
                (
                    ("table", "columns", i, "key"),
                    _unknown(key, sorted(keys), "config key, `label`, `row` or metrics.KEY"),
                )
            )
    for i, key in enumerate(metrics):
        if key not in logged:
            where = ("table", "metrics", i, "key")
            out.append(
                (
                    where,
                    _unknown(key, logged, "metric a run logs") + (probe_only if key in metric_names("probe") else ""),
                )
            )
    return out


def _unknown(key: str, options: list[str], what: str) -> str:
    hint = did_you_mean(key, options)
    return f"'{key}' is not a {what}" + (f".{hint}" if hint else "")


def dotted_keys(root: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key under a model, through every member of its unions."""
    out: list[str] = []
    for model in members(root) or [root]:
        for name, field in model.model_fields.items():
            out.append(prefix + name)
            for member in members(field.annotation):
                out.extend(dotted_keys(member, f"{prefix}{name}."))
    return sorted(set(out))


def suggest_key(bad: str, loc: tuple, root: type[BaseModel]) -> list[str]:
    """Keys a misplaced or misspelt `bad` at `loc` may have meant: the same name in another block
    first (`batch_size` -> `data.batch_size`), then close spellings at its own level."""
    here = fields_at(root, loc)
    prefix = "".join(f"{p}." for p in loc if isinstance(p, str))
    same_level = prefix + bad if root is TrainConfig else None
    elsewhere = [k for k in dotted_keys(TrainConfig) if k.rsplit(".", 1)[-1] == bad and k != same_level]
    if root is not TrainConfig:  # at a spec's top level a config key belongs under base; elsewhere, no
        elsewhere = [f"base.{k}" for k in elsewhere] if not loc else []
    close = difflib.get_close_matches(bad, here, n=3, cutoff=0.6)
    return list(dict.fromkeys([*elsewhere[:3], *close]))[:3] or difflib.get_close_matches(bad, here, n=3, cutoff=0.4)


def differences(base: TrainConfig, config: TrainConfig) -> dict[str, Any]:
    """{dotted key: value} where a cell's config differs from the base config (the seed aside)."""
    old, new = flatten(base.model_dump(mode="json")), flatten(config.model_dump(mode="json"))
    keys = [k for k in new if k != "seed" and old.get(k, None) != new[k]]
    return {k: new[k] for k in keys} | {k: None for k in old if k not in new}
