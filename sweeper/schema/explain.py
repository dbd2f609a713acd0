"""Error text for specs: where in the YAML a problem sits (file:line, field path) and what to write instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sweeper.catalogue import BRING_YOUR_OWN, LOSSES, MODELS, OPTIMIZERS, PRUNERS, SCHEDULES, Kind
from sweeper.errors import did_you_mean
from sweeper.schema.checks import suggest_key
from sweeper.schema.dotted import KIND_FIELDS
from sweeper.schema.fields import kind_tags
from sweeper.schema.search import SEARCH_TAGS

Candidates = Callable[[tuple], list[tuple]]


def cell_locations(spec: Any, row: int, profile: str | None, loc: tuple) -> list[tuple]:
    """Where in the YAML a cell field of a Spec (`spec`) may have come from, most specific first."""
    dotted = ".".join(str(p) for p in loc)
    out: list[tuple] = []
    sources: list[tuple[tuple, dict[str, Any]]] = []
    if profile:
        sources.append((("profiles", profile), spec.profiles[profile]))
    if spec.rows is not None:
        sources.append((("rows", row), spec.rows[row]))
    else:
        sources.append((("grid",), spec.grid or {}))
    for prefix, block in sources:
        for key in sorted(block, key=len, reverse=True):
            if dotted == key or dotted.startswith(key + "."):
                rest = tuple(dotted[len(key) + 1 :].split(".")) if dotted != key else ()
                out.append((*prefix, key, *rest))
            elif key.startswith(dotted + "."):  # the error is on a block a dotted key sets inside
                out.append((*prefix, key))
    out.append(("base", *loc))
    return out


def _walk(tree: Any, loc: tuple) -> tuple[int | None, bool]:
    """(1-based line of the deepest node along loc that exists, whether all of loc exists)."""
    node, line = tree, None
    for part in loc:
        if node is None:
            return line, False
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
            if node is None:
                return line, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return line, False
    return (node.start_mark.line + 1, True) if node is not None else (line, False)


def line_of(tree: Any, loc: tuple) -> int | None:
    """1-based YAML line of the deepest node along loc that exists."""
    return _walk(tree, loc)[0] if tree is not None else None


def problem(path: Path, tree: Any, places: list[tuple], msg: str, context: str = "", own: tuple = ()) -> str:
    """One problem line: file:line at the first place that exists in the YAML, its field path, the message;
    `context` (e.g. "row 'GELU'") is added when the place found is not under `own` (that row's block)."""
    found = [p for p in places if tree is not None and _walk(tree, p)[1]]
    where = (found or places)[0]
    line = line_of(tree, where)
    field = ".".join(str(p) for p in where) or "(top level)"
    mine = (own and where[: len(own)] == own) or where[:1] == ("profiles",)  # says where it is by itself
    note = f"{CONTEXT}{context}" if context and not mine else ""
    return f"{path}{f':{line}' if line else ''}: {field}: {msg}{note}"


CONTEXT = "\x00"  # separates a problem from the row it showed in, so that `paragraph` can group rows


def paragraph(path: Path, problems: list[str]) -> str:
    """The problems, each once, in order, under one heading; one found in several rows names the first."""
    grouped: dict[str, list[str]] = {}
    for text in problems:
        head, _, context = text.partition(CONTEXT)
        grouped.setdefault(head, []).extend([context] if context else [])
    unique = [
        head + (f" ({ctx[0]}" + (f", and {len(ctx) - 1} more" if len(ctx) > 1 else "") + ")" if ctx else "")
        for head, ctx in grouped.items()
    ]
    count = f" ({len(unique)} problems)" if len(unique) > 1 else ""
    return f"{path}: invalid spec{count}:\n  " + "\n  ".join(unique)


def suggest(err: Any, root: type[BaseModel]) -> str:
    """'did you mean' text: misplaced keys (searching nested blocks), misspelt names, bare kind names."""
    loc = err["loc"]
    if err["type"] == "extra_forbidden":
        close = suggest_key(str(loc[-1]), tuple(loc[:-1]), root)
        return f". Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if err["type"] in ("model_attributes_type", "model_type", "dict_type") and isinstance(err.get("input"), str):
        block = str(loc[-1]) if loc else ""
        if block in KIND_FIELDS or block in ("optimizer", "loss", "data", "pruner", "objective", "probe"):
            key = "name" if block != "probe" else "every"
            return f". `{block}` is a block: write `{block}: {{{key}: {err['input']}}}`"
        return ""
    ctx = err.get("ctx") or {}
    bad = ctx.get("tag", err.get("input"))
    raw = str(ctx.get("expected_tags") or ctx.get("expected") or "")
    options = [o.strip().strip("'") for o in raw.replace(" or ", ",").split(",") if o.strip()]
    if not options or not isinstance(bad, str):
        return ""
    hint = did_you_mean(bad, options, cutoff=0.4)
    return f".{hint}" if hint else ""


def explain(
    path: Path,
    tree: Any,
    exc: ValidationError,
    candidates: Candidates,
    root: type[BaseModel],
    context: str = "",
    own: tuple = (),
) -> list[str]:
    """One line per pydantic error, with file:line, the field path and what is allowed."""
    lines, tags = [], kind_tags() | SEARCH_TAGS
    for err in exc.errors():
        # Discriminated unions put the tag into error locations; the YAML has no such level.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in tags))
        text = message(err, loc, root)
        named = err["type"] == "union_tag_invalid" or (
            err["type"] == "union_tag_not_found" and isinstance(err.get("input"), dict)
        )
        if named and loc and str(loc[-1]) in TAGGED_KINDS:
            loc = (*loc, "name")  # the name picked the block: point at it
        lines.append(problem(path, tree, candidates(loc), text, context, own))
    return lines


# The blocks whose `name` picks a model, and the catalogue of those names.
TAGGED_KINDS: dict[str, Kind[Any]] = {
    "model": MODELS,
    "scheduler": SCHEDULES,
    "optimizer": OPTIMIZERS,
    "loss": LOSSES,
    "pruner": PRUNERS,
}


def message(err: Any, loc: tuple, root: type[BaseModel]) -> str:
    """What is wrong, in the catalogue's words where a name is unknown or missing."""
    kind = TAGGED_KINDS.get(str(loc[-1])) if loc else None
    if kind is not None and err["type"] == "union_tag_invalid":
        return kind.unknown(err["ctx"]["tag"])
    if kind is not None and err["type"] == "union_tag_not_found" and isinstance(err.get("input"), str):
        return f"`{loc[-1]}` is a block: write `{loc[-1]}: {{name: {err['input']}}}`"
    if kind is not None and err["type"] == "union_tag_not_found":
        return f"`{loc[-1]}` needs a `name`: one of {', '.join(kind.names)}" + (
            f", {BRING_YOUR_OWN}" if kind.plugins else ""
        )
    if err["type"] == "value_error":  # our validators' own sentences (catalogue names, plugin checks)
        return str(err["msg"]).removeprefix("Value error, ")
    return err["msg"] + suggest(err, root)
