"""`sweeper schema`: every spec key with its type, default, allowed values and meaning, read off the
pydantic models themselves, so the reference cannot drift from what `validate` accepts."""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from sweeper.catalogue import BRING_YOUR_OWN, KINDS
from sweeper.schema.choices import Named
from sweeper.schema.config import TrainConfig
from sweeper.schema.fields import members
from sweeper.schema.spec import Spec

_BOUNDS = {Ge: ">=", Gt: ">", Le: "<=", Lt: "<", MinLen: "length >=", MaxLen: "length <="}
_ATTR = {Ge: "ge", Gt: "gt", Le: "le", Lt: "lt", MinLen: "min_length", MaxLen: "max_length"}


def _type(annotation: Any) -> str:
    """A short type name: float, list[int], block, one of the Literal's values."""
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(_type(a) for a in get_args(annotation))
    if origin is not None and get_args(annotation) and origin.__name__ == "Annotated":
        return _type(get_args(annotation)[0])
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type(a) for a in get_args(annotation))}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "block"
    if annotation is None or annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _named(field: FieldInfo) -> str:
    """'one of <the catalogue's names>' for a field that takes a catalogue name (and how to bring your own)."""
    named = next((m for m in field.metadata if isinstance(m, Named)), None)
    if named is None:
        return ""
    own = f", or your own ({BRING_YOUR_OWN.removeprefix('or your own as ')})" if named.kind.plugins else ""
    return "one of " + ", ".join(named.kind.names) + own


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for kind, sign in _BOUNDS.items():
            if isinstance(meta, kind):
                parts.append(f"{sign} {getattr(meta, _ATTR[kind])}")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return f"default {value!r}" if value is not None else "default null"


# Top-level keys whose meaning is the spec's shape rather than a Field description.
_NOTES = {
    "base": "the fixed config of the table: the config keys below, nested or dotted",
    "seeds": "every row trains once per seed; tables show mean ± std over seeds",
    "rows": "one mapping per table row: a `label` plus dotted config overrides of base",
    "grid": "instead of rows: dotted config key -> list of values; the cartesian product is the rows",
    "profiles": "name -> config overrides (and optionally `seeds`; `smoke: true` marks a smoke test, whose table "
    "shows the report's values without a verdict) applied to every cell: `--profile NAME`",
}


def _container(annotation: Any) -> tuple[str, Any] | None:
    """('[]', item) for a list of blocks, ('.<key>', value) for a mapping to blocks."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and args and members(args[0]):
        return "[]", args[0]
    if origin is dict and len(args) == 2 and members(args[1]):
        return ".<key>", args[1]
    if origin in (Union, types.UnionType):
        found = [c for a in args if (c := _container(a))]
        return found[0] if found else None
    return None


def _fields(model: type[BaseModel], prefix: str, out: list[str], note: str = "") -> None:
    """One entry per key of a block, then its nested blocks (every kind of a union) recursively."""
    doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
    out.append(f"\n{prefix.rstrip('.') or '(top level)'}{f' [{note}]' if note else ''}: {doc}")
    nested: list[tuple[str, Any]] = []
    for name, field in model.model_fields.items():
        inner = _container(field.annotation)
        if inner:
            nested.append((f"{prefix}{name}{inner[0]}.", inner[1]))
        elif members(field.annotation):
            nested.append((f"{prefix}{name}.", field.annotation))
            continue
        facts = "; ".join(x for x in (_named(field) or _type(field.annotation), _bounds(field), _default(field)) if x)
        meaning = field.description or (_NOTES.get(name, "") if not prefix else "")
        out.append(f"  {prefix}{name}: {facts}" + (f"  -- {meaning}" if meaning else ""))
    for sub, annotation in nested:
        kinds = members(annotation)
        for member in kinds:
            tag = member.model_fields.get("name") or member.model_fields.get("type")
            label = f"{'name' if 'name' in member.model_fields else 'type'}: {_type(tag.annotation)}" if tag else ""
            _fields(member, sub, out, label if len(kinds) > 1 else "")


def schema_text() -> str:
    """The reference of every spec key: the spec's own keys, then the config keys of base/rows/profiles."""
    out = [
        "Every key of a spec file, as `sweeper validate` checks it. Config keys are dotted end to end: the YAML",
        "key optimizer.lr is the row override, the Optuna parameter, the MLflow param and the table column.",
    ]
    _fields(Spec, "", out)
    out.append("\n--- config keys: set in base; overridden by rows, grid keys, search params and profiles ---")
    _fields(TrainConfig, "", out)
    out.append("\n--- named choices (sweeper.catalogue): what each name means ---")
    for kind in KINDS:
        own = f"; {BRING_YOUR_OWN} (README: 'Your own model in five minutes')" if kind.plugins else ""
        out.append(f"\n{kind.key} ({kind.what}){own}:")
        out += [f"  {entry.name}: {entry.help}" for entry in kind]
    return "\n".join(out) + "\n"
