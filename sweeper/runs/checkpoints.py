"""Checkpoint files and the per-cell background worker that ships them; torch only, no MLflow.

A checkpoint is `train`'s resumable state (tensors, numbers, strings and plain containers), so
it loads with `torch.load(..., weights_only=True)`: nothing in it can run code when read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import torch


def snapshot(obj: Any) -> Any:
    """A copy of a state tree that later training steps cannot change: tensors cloned, containers copied."""
    # A device-side clone costs microseconds on a GPU; the slow part (copy to the host,
    # pickling, the write) then runs on the background worker while the next epoch trains.
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return type(obj)((k, snapshot(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


S = TypeVar("S", bound=Mapping[str, Any])


class HostCopier:
    """Copies each epoch's checkpoint to host memory so that training cannot change it, waiting for the GPU once.

    On CUDA every tensor goes into pinned host memory with an asynchronous copy queued behind the
    epoch's work, and one event wait ends the checkpoint: the writer thread used to make thousands of
    blocking copies (about 4,200 tensors for DenseNet-201 with Adam), each draining the training queue.
    On MPS the copy is a plain blocking one (MPS is not safe from a second thread, nor async from
    pageable memory); on a CPU, a clone. The best epoch's weights are copied once per improvement:
    while the loop hands the same `best_state` object, its earlier host copy is reused.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.pin = device.type == "cuda" and torch.cuda.is_available()
        self.copied = 0  # tensors copied by the last call (what a test counts)
        self._best: tuple[Any, Any] | None = None  # (the loop's best_state, its host copy)

    def __call__(self, state: S) -> S:
        """A host copy of a checkpoint (strides kept); reuses the best weights' copy when they did not change."""
        self.copied = 0
        best = state.get("best_state")
        reuse = self._best is not None and best is self._best[0]
        out = {k: self._copy(v) for k, v in state.items() if not (k == "best_state" and reuse)}
        if best is not None:
            if not reuse:
                self._best = (best, out["best_state"])
            out["best_state"] = self._best[1]  # type: ignore[index]
        if self.pin:  # the one wait of this checkpoint: every queued copy has landed
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            event.synchronize()
        return cast(S, out)

    def _copy(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            self.copied += 1
            if obj.device.type == "cuda":
                host = torch.empty_like(obj, device="cpu", pin_memory=self.pin)  # strides kept
                return host.copy_(obj.detach(), non_blocking=self.pin)
            return obj.detach().to("cpu", copy=True)
        if isinstance(obj, dict):
            return type(obj)((k, self._copy(v)) for k, v in obj.items())
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._copy(v) for v in obj)
        return obj


def to_cpu(obj: Any) -> Any:
    """A state tree with every tensor on the CPU (strides kept), so a machine without the GPU can open it."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return type(obj)((k, to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save(state: Mapping[str, Any], path: Path) -> Path:
    """torch.save to a temp file beside `path`, fsync, then rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU without unpickling code (weights_only=True)."""
    return torch.load(path, map_location="cpu", weights_only=True)


class SerialWorker:
    """Runs jobs one at a time, in order, on one background thread; errors come back on the caller's thread.

    Order matters: a cell's checkpoint must be stored before its epoch's metrics are logged, so
    a resumed run never logs a step twice. `max_pending` bounds memory: submitting more waits.
    """

    def __init__(self, max_pending: int = 2):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-log")
        self._pending: list[Future] = []
        self._max = max_pending

    def submit(self, job: Callable[[], Any]) -> None:
        """Queue a job; raises the error of an earlier job that failed."""
        self._reap(block=len(self._pending) >= self._max)
        self._pending.append(self._pool.submit(job))

    def _reap(self, block: bool) -> None:
        if block and self._pending:
            self._pending[0].result()
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()

    def drain(self) -> None:
        """Wait for every queued job; raises the first error."""
        try:
            while self._pending:
                self._pending.pop(0).result()
        finally:
            self._pending.clear()

    def close(self) -> None:
        """Drain, then stop the thread."""
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)
