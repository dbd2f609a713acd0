"""Which process trains a run: host:pid, tagged on the run, and whether such a process is still alive here.

A run whose process is alive elsewhere on this machine is training; one whose process died (kill -9, a
power cut) is free to resume.
"""

from __future__ import annotations

import os
import platform


def worker_id() -> str:
    """host:pid of this process, tagged on the runs it trains."""
    return f"{platform.node()}:{os.getpid()}"


def alive_elsewhere(worker: str) -> bool:
    """True when `worker` (a worker_id) is another live process on this machine: its run is still training."""
    host, _, pid = worker.rpartition(":")
    if host != platform.node() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def on_this_host(worker: str) -> bool:
    """Whether a worker_id names a process of this machine."""
    return worker.rpartition(":")[0] == platform.node()


def died_here(worker: str) -> bool:
    """Whether `worker` (a worker_id, `host:pid #index` too) was another process of this machine that is gone."""
    worker = worker.partition(" #")[0]
    return on_this_host(worker) and worker != worker_id() and not alive_elsewhere(worker)
