"""Cell ids: a hash of what changes the training, stable across sweeper upgrades.

An id hashes the config's canonical JSON. A field added to the schema after ids were first
given out is left out of that JSON while it holds its default, at any depth, so adding a field
moves no id and upgrading never re-trains finished work. The fields that existed then are
listed below by dotted block, once and for all: they are hashed whatever their value, as they
always were. Nothing needs to be marked when a field is added; tests/golden/cell_ids.json holds the
ids of every shipped spec and profile and fails when one moves.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

# Every field of every block when ids were frozen (sweeper 0.1, December 2026), by dotted block.
# Never add to these sets: a new field is hashed only when it is not at its default.
FROZEN_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset({"model", "activation", "data", "optimizer", "scheduler", "loss", "epochs", "seed", "precision",
                   "channels_last"}),
    "data": frozenset({"augment", "normalize", "batch_size", "eval_batch_size", "val_size", "train_size",
                       "test_size"}),
    "loss": frozenset({"name", "label_smoothing", "gamma", "penalty", "penalty_weight"}),
    "model": frozenset({"name", "dropout", "fc_dropout", "stem", "widths", "hidden", "blocks", "growth_rate",
                        "init_features", "batch_norm"}),
    "optimizer": frozenset({"name", "lr", "momentum", "nesterov", "weight_decay"}),
    "probe": frozenset({"every", "etas", "step_loss"}),
    "scheduler": frozenset({"name", "step_size", "gamma", "warmup_epochs", "eta_min", "factor", "patience",
                            "warmup_fraction", "start_factor", "end_factor"}),
}  # fmt: skip


def id_view(model: BaseModel, block: str = "") -> dict[str, Any]:
    """The JSON a cell id hashes: every frozen field, later fields only where they differ from their default,
    and a custom block's arguments (the user's keyword arguments have no defaults here)."""
    frozen = FROZEN_FIELDS.get(block, frozenset())
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if name not in frozen and not field.is_required() and value == field.get_default(call_default_factory=True):
            continue
        dotted = f"{block}.{name}" if block else name
        out[name] = id_view(value, dotted) if isinstance(value, BaseModel) else _json(value)
    for name, value in (model.model_extra or {}).items():
        out[name] = _json(value)
    return out


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def config_hash(config: BaseModel) -> str:
    """First 12 hex digits of the sha256 of the config's id view as canonical JSON."""
    blob = json.dumps(id_view(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
