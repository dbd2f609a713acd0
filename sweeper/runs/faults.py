"""Faults of the store rather than of a cell: its disk is full, it is read-only, its server stopped answering.
A cell that meets one is
not failed (nothing is wrong with it) but stopped as interrupted, and the sweep ends with one paragraph
and exit 2; the same command resumes it once the store is fixed. Imports no MLflow: the CLI asks here.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from sweeper.errors import UserError

# What sqlite (through SQLAlchemy, or an MLflow server's error reply) says for each fault.
_FULL = ("database or disk is full", "no space left on device")
_READ_ONLY = ("attempt to write a readonly database", "read-only file system")
# What MLflow's HTTP client says (after its own retries) when the server is gone.
_GONE = ("max retries exceeded", "connection refused", "failed to establish a new connection", "connection aborted")
_URL = re.compile(r"https?://[^\s/'\"]+")


class StoreUnavailable(UserError):
    """The store cannot take writes now: the sweep stops cleanly, the cell stays resumable."""


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes and contexts, each once."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is not None and not any(e is s for s in seen):
            seen.append(e)
            todo += [e.__cause__, e.__context__]
    return seen


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_mb(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(_existing(path)).free / 1e6:.0f} MB free"
    except OSError:
        return "free space unknown"


def diagnose(exc: BaseException, store_dir: Path) -> StoreUnavailable | None:
    """The one-paragraph error for a full disk or a read-only store anywhere in `exc`'s chain, else None.

    `store_dir` is the local store's folder, named when the error does not name a file of its own.
    """
    for e in _chain(exc):
        if isinstance(e, StoreUnavailable):
            return e
        text = str(e).lower()
        number = e.errno if isinstance(e, OSError) else None
        named = getattr(e, "filename", None)
        where = Path(named).parent if isinstance(named, str) and named else store_dir
        if number in (errno.ENOSPC, errno.EDQUOT) or any(t in text for t in _FULL):
            return StoreUnavailable(
                f"the disk holding {where} is full ({_free_mb(where)}); the cell in progress was stopped, not "
                "failed, and keeps its last checkpoint. Free space and run the same command again."
            )
        if number == errno.EROFS or any(t in text for t in _READ_ONLY):
            return StoreUnavailable(_read_only(where, "is read-only"))
        if any(t in text for t in _GONE) and (url := _URL.search(str(e))):
            return StoreUnavailable(
                f"the MLflow server at {url.group(0)} stopped answering ({type(e).__name__}); the cell in progress "
                "was stopped, not failed, and keeps its last stored checkpoint. Start the server again (`sweeper "
                "server`) and run the same command: it continues that cell from its checkpoint."
            )
    return None


def _read_only(where: Path, why: str) -> str:
    return (
        f"the MLflow store at {where} {why}, and `sweeper run` writes its runs and its study there. "
        "`sweeper table` reads it as it is; to train, point SWEEPER_STORE_DIR (or --tracking-uri "
        "sqlite:///PATH/mlflow.db) at a writable folder, with a copy of the store if its runs should count."
    )


def check_writable(db: Path) -> None:
    """A StoreUnavailable unless a sqlite store at `db` (existing or not) can be written; writes nothing."""
    folder = _existing(db.parent)
    try:
        read_only_mount = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_mount = False
    if read_only_mount:
        raise StoreUnavailable(_read_only(db.parent, "is on a read-only file system"))
    # sqlite writes a journal beside the database: the folder must be writable, and the file if it exists
    for path in (folder, db) if db.exists() else (folder,):
        if not os.access(path, os.W_OK):
            raise StoreUnavailable(_read_only(db.parent, f"is read-only for this user ({path} cannot be written)"))
