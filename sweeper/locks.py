"""An exclusive advisory lock on an existing folder or file (flock), for work two processes may race on:
the first creation of a store, the rewrite of the data cache. No lock file is left behind."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; creation races there are left as they were
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def locked(path: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a folder or a file that exists) until the block ends."""
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDONLY)  # a folder opens read-only too, and flock takes it on Linux and macOS
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes, and by the kernel if we die
        except OSError:  # a filesystem without flock on folders (some NFS): go on unlocked, as before locks
            pass
        yield
    finally:
        os.close(fd)
