"""Reading a spec file's YAML defensively: size and alias caps, UTF-8 only, duplicate keys reported.

A spec is a few kilobytes written by hand. Anything far larger, or an alias graph that expands to
far more nodes than a person writes (a "billion laughs" of nested mappings), is refused before
pydantic or the override merging walks it, since both copy every expansion and would hang.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import UserError

MAX_BYTES = 1 << 20  # the largest shipped spec is under 5 kB
MAX_NODES = 100_000  # YAML nodes after expanding every alias; a hand-written spec has a few hundred


def read_spec_text(path: Path) -> str:
    """The spec file's text: at most MAX_BYTES of UTF-8, else a UserError saying why."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the spec file: {exc.strerror or exc}.") from None
    if len(data) > MAX_BYTES:
        raise UserError(
            f"{path}: the file is larger than {MAX_BYTES // 1024} KiB; a spec is a short hand-written YAML file."
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "a spec is a YAML text file."
        ) from None


def load_yaml(text: str, path: Path) -> tuple[Any, Any, list[str]]:
    """(data, node tree, problems): the safe-loaded document, its composed nodes (for line numbers),
    and one message per duplicate key. Syntax errors and oversized documents raise a UserError."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise UserError(f"{path}: the spec is larger than {MAX_BYTES // 1024} KiB.")
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # the reader rejects control characters up front
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    try:
        tree = loader.get_single_node()
        if tree is None:
            return None, None, []
        size = _expanded_size(tree, {})
        if size > MAX_NODES:
            raise UserError(
                f"{path}: the YAML expands to more than {MAX_NODES:,} nodes through its aliases (*name); "
                "a spec that large is refused rather than expanded. Write the repeated blocks out, or "
                "use fewer nested aliases."
            )
        problems = [f"{path}:{line}" + text_ for line, text_ in _duplicates(tree, set())]
        data = loader.construct_document(tree)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise UserError(f"{path}: the YAML is nested too deeply to be a spec.") from None
    finally:
        loader.dispose()
    return data, tree, problems


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes in the tree once every alias is copied out (memoised per node, so linear in the file)."""
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a recursive alias counts once instead of looping
        memo[key] = 1 + sum(_expanded_size(child, memo) for child in _children(node))
    return memo[key]


def _duplicates(node: yaml.Node, seen: set[int], where: str = "") -> list[tuple[int, str]]:
    """(line, message) for every key given twice in one mapping (YAML would keep the last silently)."""
    if id(node) in seen:
        return []
    seen.add(id(node))
    out: list[tuple[int, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                out.extend(_duplicates(value, seen, where))
                continue
            line, field = key.start_mark.line + 1, f"{where}{key.value}"
            ident = (key.tag, key.value)
            if ident in first:
                out.append((line, f": {field}: duplicate key (first given on line {first[ident]}); give each key once"))
            else:
                first[ident] = line
            out.extend(_duplicates(value, seen, field + "."))
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            out.extend(_duplicates(child, seen, f"{where}{index}."))
    return out
