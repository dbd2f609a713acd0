"""Schema types built from the catalogue: a name field, and a block whose kind its `name` picks.

A name is one of the catalogue's, or, where the kind takes the user's code, a reference
(`file.py:Attr`, `package.module:Attr`): the block of a reference is the kind's `custom` model,
which takes the user's keyword arguments as they are (checked against the signature on load).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, Discriminator, Tag

from sweeper.catalogue import Kind
from sweeper.schema.plugins import is_reference

CUSTOM = "custom"  # the union tag of a block that names the user's code


@dataclass(frozen=True)
class Named:
    """Annotated metadata: this string field holds a name of `kind` (`sweeper schema` prints the choices)."""

    kind: Kind[Any]


def _checker(kind: Kind[Any]) -> Any:
    def check(value: str) -> str:
        if value in kind or (kind.plugins and is_reference(value)):
            return value
        raise ValueError(kind.unknown(value))

    return check


def name_of(kind: Kind[Any]) -> Any:
    """A str field that takes the kind's names (and references, where the kind takes the user's code)."""
    return Annotated[str, AfterValidator(_checker(kind)), Named(kind)]


def literal(kind: Kind[Any], family: str | None = None) -> Any:
    """Literal[...] of the kind's names (those of one model family): a union member's `name` field."""
    names = tuple(e.name for e in kind if family is None or getattr(e, "family", None) == family)
    return Literal[names] if names else str


def _tag_of(kind: Kind[Any], default: str | Callable[[dict], str] | None) -> Any:
    def tag(value: Any) -> str | None:
        if not isinstance(value, (dict, BaseModel)):
            return None  # not a block at all: explain.message says how to write one
        if isinstance(value, dict):
            name = value.get("name", default(value) if callable(default) else default)
        else:
            name = getattr(value, "name", default)
        if isinstance(name, str) and kind.plugins and is_reference(name):
            return CUSTOM
        return name if isinstance(name, str) else None

    return tag


def tagged_union(
    kind: Kind[Any],
    member: Any,
    custom: type[BaseModel] | None = None,
    default: str | Callable[[dict], str] | None = None,
) -> Any:
    """A block whose `name` picks its model: `member(name)` for each catalogue name, `custom` for references;
    a block without a name is the `default` name's, or `default(block)`'s (none: the name is required)."""
    options: list[Any] = [Annotated[member(e.name), Tag(e.name)] for e in kind]
    if custom is not None and kind.plugins:
        options.append(Annotated[custom, Tag(CUSTOM)])
    return Annotated[Union[tuple(options)], Discriminator(_tag_of(kind, default))]
