"""The one door from a name to its code: a catalogue entry's `target`, or the user's own reference.

`implementation(kind, name)` imports `module:attr` for a built-in name and resolves a spec's
`file.py:Attr` / `package.module:Attr` through sweeper.schema.plugins (loaded when the spec was).
The built-ins take the same path as the user's code, so one path is tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeper.catalogue import Kind
from sweeper.errors import UserError
from sweeper.schema import plugins


def implementation(kind: Kind[Any], name: str) -> Any:
    """The object a name of `kind` stands for; UserError for a name that is neither built in nor a reference."""
    if name in kind:
        target = kind.get(name).target
        if not target:
            raise UserError(f"{kind.what} {name!r} has no implementation to import (catalogue entry without target).")
        return plugins.load(target, Path.cwd()).obj  # a module reference: found on sys.path
    if kind.plugins and plugins.is_reference(name):
        return plugins.resolve(name)
    raise UserError(kind.unknown(name))
