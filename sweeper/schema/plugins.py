"""The door through which a spec names code: `file.py:Attr` or `package.module:Attr` (Hydra's `_target_`).

Loading a reference imports the user's file or module, so validating a spec that names one runs the
user's code (which may well import torch; this module imports none, so a spec naming only built-ins
still validates without it). Every failure is a PluginError: one paragraph saying what to fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import keyword
import os
import re
import sys
import threading
import traceback
import typing
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from sweeper.errors import UserError, did_you_mean, warn

Kind = Literal["file", "module"]


class PluginError(UserError):
    """A reference that cannot be loaded, or called as written; the message is one paragraph."""


@dataclasses.dataclass(frozen=True)
class Loaded:
    """What a reference named: the object, the file that defines it and a digest of that file's bytes."""

    reference: str  # as the spec wrote it
    obj: Any
    source: Path | None
    digest: str  # first 12 hex digits of the sha256 of `source`'s bytes; "" without a source file
    kind: Kind


# A user's file is imported as a module named after its resolved path (stable across processes on
# one machine, so pickles of its classes find it again once it is loaded), under this prefix.
_PREFIX = "_sweeper_user_"
_LOCK = threading.RLock()  # loads import code: one at a time, re-entrant for a file that loads another
_CACHE: dict[tuple[str, str, str], Loaded] = {}
_REGISTRY: dict[str, dict[Path | None, Loaded]] = {}  # reference as written -> source file -> what it loaded
_DIGESTS: dict[str, str] = {}  # module name -> digest of the bytes that module was executed from
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _dotted(text: str) -> bool:
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in text.split("."))


def _parse(text: str) -> tuple[Kind, str, str] | None:
    """(kind, file or module, attribute) of a reference, else None."""
    if text != text.strip() or "://" in text:
        return None
    # Only Windows reads `C:\...` as a drive; anywhere else a second colon means this is no reference.
    drive = text[:2] if os.name == "nt" and _DRIVE.match(text) else ""
    target, colon, attr = text[len(drive) :].partition(":")
    if not colon or not _dotted(attr):
        return None
    target = drive + target
    if target.endswith(".py") or "/" in target or "\\" in target:
        name = re.split(r"[\\/]", target)[-1]
        return ("file", target, attr) if name not in ("", ".py") else None
    return ("module", target, attr) if _dotted(target) else None


def is_reference(text: object) -> bool:
    """Whether `text` names code (`path/to/file.py:Attr`, `package.module:Attr`) rather than a built-in."""
    return isinstance(text, str) and _parse(text) is not None


def load(reference: str, base_dir: Path) -> Loaded:
    """Import what `reference` names (a file relative to `base_dir`, or a module); cached per resolved reference."""
    parsed = _parse(reference) if isinstance(reference, str) else None
    if parsed is None:
        raise PluginError(f"`{reference}` does not name code: write `file.py:Name` or `package.module:Name`.")
    kind, target, attr = parsed
    with _LOCK:
        path = _locate(reference, target, Path(base_dir)) if kind == "file" else None
        key = (kind, str(path) if path else target, attr)
        if key in _CACHE:
            return dataclasses.replace(_CACHE[key], reference=reference)
        if path is not None and not path.is_relative_to(Path(base_dir).resolve()):
            warn(
                f"`{reference}` names {path}, outside the spec's folder {Path(base_dir).resolve()}: workers that "
                "find the spec on another machine (SLURM, compose) may not find this file. Keep it beside the spec, "
                "or in a folder under it."
            )
        module = _import_file(reference, path) if path else _import_module(reference, target, Path(base_dir))
        obj = _attribute(reference, module, attr)
        source = path or _defining_file(obj, module)
        # A user's file: the digest of the bytes that ran, which a later edit of the file does not change.
        digest = _DIGESTS[module.__name__] if path else _sha(source.read_bytes()) if source else ""
        _CACHE[key] = Loaded(reference, obj, source, digest, kind)
        return _CACHE[key]


def _locate(reference: str, target: str, base_dir: Path) -> Path:
    """The resolved .py file a file reference names, or a PluginError saying which path was tried."""
    given = Path(target).expanduser()
    path = (given if given.is_absolute() else base_dir / given).resolve()
    relative = f" (`{target}` taken relative to the spec's folder, {base_dir.resolve()})" * (not given.is_absolute())
    if path.is_dir():
        raise PluginError(f"`{reference}`: {path} is a folder, not a .py file{relative}.")
    if not path.is_file():
        raise PluginError(f"`{reference}`: there is no file {path}{relative}.")
    if path.suffix != ".py":
        raise PluginError(f"`{reference}`: {path} is not a .py file; sweeper imports Python source files only.")
    return path


def _import_file(reference: str, path: Path) -> ModuleType:
    """The module of a user's file, imported once per resolved path; `_DIGESTS` keeps the digest of what ran."""
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{_PREFIX}{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules and name in _DIGESTS:
        return sys.modules[name]
    data = path.read_bytes()
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None  # a .py path always has a spec
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look a class's module up by name while it runs
    folder = str(path.parent)
    sys.path.insert(0, folder)  # so the file imports its siblings, as `python nets.py` would
    try:
        # Run the very bytes the digest is of (a loader would read the file again, or a stale .pyc), and
        # with the user's own __future__ imports only, not this module's (dont_inherit).
        exec(compile(data, str(path), "exec", dont_inherit=True), module.__dict__)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise PluginError(f"`{reference}`: importing {path} failed: {_raised(exc, str(path))}.") from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    _DIGESTS[name] = _sha(data)
    return module


def _import_module(reference: str, target: str, base_dir: Path) -> ModuleType:
    """An importable module, looked for on sys.path and then in the spec's folder."""
    folder = str(base_dir.resolve())
    added = folder not in sys.path
    if added:
        sys.path.append(folder)  # last: a spec's folder never shadows an installed package
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise PluginError(_not_importable(reference, target, base_dir, exc)) from None
        raise PluginError(f"`{reference}`: importing `{target}` failed: {_raised(exc, None)}.") from exc
    except (Exception, SystemExit) as exc:
        raise PluginError(f"`{reference}`: importing `{target}` failed: {_raised(exc, None)}.") from exc
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _not_importable(reference: str, target: str, base_dir: Path, exc: ModuleNotFoundError) -> str:
    near, attr = base_dir / target, reference.rpartition(":")[2]
    hint = f"To name a file next to the spec, write its path: `{target.replace('.', '/')}.py:{attr}`"
    if near.is_file():
        hint = f"There is a file {near.resolve()}, but sweeper imports .py files only"
    return f"`{reference}`: cannot import `{target}`: {exc} (looked on sys.path and in the spec's folder, {base_dir.resolve()}). {hint}."


def _raised(exc: BaseException, prefer: str | None) -> str:
    """`Type: message at file:line`, the line in the user's file (`prefer`) where it was raised."""
    text = " ".join(str(exc).split())  # one paragraph, whatever the exception's own layout
    what = f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
    if isinstance(exc, SyntaxError):  # compiling raises it with no frame in the file
        what = f"{type(exc).__name__}: {exc.msg}"
        return f"{what} at {exc.filename}:{exc.lineno}" + (f" ({exc.text.strip()})" if exc.text else "")
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__ and "<frozen" not in f.filename
    ]
    if not frames:
        return what
    mine = [f for f in frames if f.filename == prefer]
    at, deepest = (mine or frames)[-1], frames[-1]
    inside = f" (inside {deepest.filename}:{deepest.lineno})" if deepest is not at else ""
    return f"{what} at {at.filename}:{at.lineno}{inside}"


def _attribute(reference: str, module: ModuleType, attr: str) -> Any:
    """`module.attr` (dotted), or a PluginError listing what is there instead."""
    obj: Any = module
    for depth, part in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(_missing(reference, module, obj, attr.split(".")[: depth + 1])) from None
    return obj


def _missing(reference: str, module: ModuleType, owner: Any, parts: list[str]) -> str:
    if owner is module:
        where = getattr(module, "__file__", None) or f"module `{module.__name__}`"
        # What a spec could name: the module's own public classes and functions, not what it imported.
        offered = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module.__name__
        )
        listing = f" Its public classes and functions: {', '.join(offered)}." if offered else ""
    else:
        where, listing = f"`{'.'.join(parts[:-1])}`", ""
    hint = did_you_mean(parts[-1], [n for n in dir(owner) if not n.startswith("_")])
    return f"`{reference}`: {where} defines no `{parts[-1]}`.{hint}{listing}"


def _defining_file(obj: Any, module: ModuleType) -> Path | None:
    """The file an object's code is in (a re-exported class's own file), else its module's, else None."""
    try:
        found = inspect.getsourcefile(obj)
    except TypeError:  # builtins, instances: no source of their own
        found = None
    found = found or getattr(module, "__file__", None)
    return Path(found).resolve() if found and Path(found).is_file() else None


def check_arguments(obj: Any, kwargs: dict[str, Any], *, supplied: tuple[str, ...] = ()) -> list[str]:
    """The problems with calling `obj(**kwargs)` plus the `supplied` names sweeper passes, by keyword."""
    if not callable(obj):
        return [f"{obj!r} is not callable, so it cannot be built with arguments"]
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have no signature: nothing to check before calling
        return []
    hints = _hints(obj)
    sig = sig.replace(parameters=[p.replace(annotation=hints.get(n, p.annotation)) for n, p in sig.parameters.items()])
    shown = f"{getattr(obj, '__qualname__', type(obj).__name__)}{sig}"
    params = sig.parameters
    problems = _binding_problems(shown, params, kwargs, supplied)
    for key, value in kwargs.items():
        if key in params and key not in supplied:
            problems += _type_problem(shown, params[key], value)
    return problems


def _hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations (string ones too, as `from __future__ import annotations` writes them)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - one unresolvable name fails them all: resolve the rest one at a time
        pass
    space, hints = getattr(inspect.unwrap(target), "__globals__", {}), {}
    for name, annotation in getattr(target, "__annotations__", {}).items():
        try:  # what get_type_hints does, for this one annotation
            hints[name] = eval(annotation, space) if isinstance(annotation, str) else annotation
        except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is left unchecked, never fatal
            continue
    return hints


def _binding_problems(
    shown: str, params: typing.Mapping[str, inspect.Parameter], kwargs: dict[str, Any], supplied: tuple[str, ...]
) -> list[str]:
    """Unknown, doubly given, unaccepted and missing arguments."""
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    choices = [n for n in named if n not in supplied]
    out = []
    for key in kwargs:
        if key in supplied:
            out.append(f"{shown}: `{key}` is passed by sweeper itself; leave it out here")
        elif key not in named and not open_ended:
            hint = did_you_mean(key, choices) or f" It takes {', '.join(choices) or 'none'}."
            out.append(f"{shown} takes no argument `{key}`.{hint}")
    unaccepted = [key for key in supplied if key not in named and not open_ended]
    out += [f"{shown} must accept `{key}`, which sweeper passes to it" for key in unaccepted]
    for name, p in params.items():
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            out.append(f"{shown}: `{name}` is positional-only, but sweeper passes arguments by name")
        elif p.default is p.empty and name in choices and name not in kwargs:
            out.append(f"{shown} needs `{name}`, which is not given")
    return out


def _type_problem(shown: str, param: inspect.Parameter, value: Any) -> list[str]:
    """[] when `value` fits the parameter's annotation (lax, as YAML gives it) or there is none to check."""
    annotation = param.annotation
    if annotation is param.empty or annotation is Any or isinstance(annotation, str):
        return []
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    except Exception:  # noqa: BLE001 - a type pydantic cannot model (a torch class, a forward ref) goes unchecked
        return []
    try:
        adapter.validate_python(value, strict=False)
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        return [f"{shown}: `{param.name}` must be {inspect.formatannotation(annotation)}, not {value!r} ({why})"]
    return []


def register(loaded: Loaded) -> None:
    """Make `loaded.reference` resolve to its object in this process."""
    with _LOCK:
        _REGISTRY.setdefault(loaded.reference, {})[loaded.source] = loaded


def lookup(reference: str) -> Loaded | None:
    """What `reference` was registered as in this process, if anything; a PluginError if it names several files."""
    found = list(_REGISTRY.get(reference, {}).values())
    if len(found) > 1:  # specs in different folders, one text: only the spec's folder tells which is meant
        files = " and ".join(str(f.source) for f in found)
        raise PluginError(f"`{reference}` names {files} in this process: resolve it with the folder of its spec.")
    return found[0] if found else None


def resolve(reference: str, base_dir: Path | None = None) -> Any:
    """The object `reference` names: loaded (and registered) against `base_dir` when given, else as registered."""
    if base_dir is not None:
        loaded = load(reference, base_dir)
        register(loaded)
        return loaded.obj
    found = lookup(reference)
    if found is None:
        raise PluginError(f"`{reference}` is not loaded in this process: load the spec that names it first.")
    return found.obj


def raised_in_user_code(exc: BaseException) -> str:
    """`Type: message at file:line`, the line being the last frame of the traceback in a file of the user's
    code this process loaded (where the user's bug most likely is); without such a frame, `Type: message`."""
    what = f"{type(exc).__name__}: {exc}"
    with _LOCK:
        # registered: what specs named (the built-ins load through this door too, but are never registered)
        sources = {str(source) for found in _REGISTRY.values() for source in found if source is not None}
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in sources]
    return f"{what} at {frames[-1].filename}:{frames[-1].lineno}" if frames else what


def loaded_references() -> list[Loaded]:
    """Everything this process has loaded, in load order (for logging sources and digests with a run)."""
    with _LOCK:
        return list(_CACHE.values())


def clear_cache() -> None:
    """Forget every load and registration, and the users' modules, so changed files are imported afresh."""
    with _LOCK:
        _CACHE.clear()
        _REGISTRY.clear()
        for name in list(_DIGESTS):
            sys.modules.pop(name, None)
        _DIGESTS.clear()
