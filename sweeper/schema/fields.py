"""What a config model accepts where: the pydantic models inside an annotation, the tags of its tagged
unions, and the valid keys at an error location (for "did you mean" and `sweeper explain`)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, Tag

from sweeper.schema.config import TrainConfig

# Blocks whose `name` picks among several models (kind fields, and blocks that may name the user's code).
TAGGED_FIELDS = ("model", "scheduler", "optimizer", "loss")


def members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (Annotated, Union, Optional unwrapped), each once."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return list(dict.fromkeys(m for arg in get_args(annotation) for m in members(arg)))


def tags(annotation: Any) -> dict[str, type[BaseModel]]:
    """{union tag: its model} of a tagged union annotation (see choices.tagged_union)."""
    out: dict[str, type[BaseModel]] = {}
    for arg in get_args(annotation):
        inner = get_args(arg)
        tag = next((m.tag for m in inner[1:] if isinstance(m, Tag)), None) if inner else None
        if tag is not None and members(inner[0]):
            out[tag] = members(inner[0])[0]
        else:
            out.update(tags(arg))
    return out


def kind_tags() -> set[str]:
    """Every tag of the tagged blocks (model, scheduler, optimizer, loss): pydantic puts them in error locations."""
    return {tag for field in TAGGED_FIELDS for tag in tags(TrainConfig.model_fields[field].annotation)}


def fields_at(root: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys of the block at a pydantic error location (tags pick the union member)."""
    models = [root]
    tagged: dict[str, type[BaseModel]] = {}
    for part in loc:
        if not models:
            return []
        if part in tagged:
            models, tagged = [tagged[part]], {}
            continue
        field = models[0].model_fields.get(str(part))
        models = members(field.annotation) if field else []
        tagged = tags(field.annotation) if field else {}
    return sorted({name for m in models for name in m.model_fields})
