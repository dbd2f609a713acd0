"""The life of one cell's MLflow run: created or resumed in place, one checkpoint and one metrics
request per epoch (shipped in order by a background worker), and how it ends.

Each epoch's checkpoint is stored before its metrics are logged, so a run killed at any moment
has a `checkpoints/last.pt` at least as new as its metric history; resuming re-logs what the
checkpoint has and MLflow lacks, and every step appears once. Built on tracking.py's calls: no
MLflow import here.
"""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweeper import checkpoints, tracking
from sweeper.errors import Pruned
from sweeper.spec import Cell, Spec

TAG = tracking.TAG


def best_weights(state: dict[str, Any]) -> dict[str, Any]:
    """best.pt: the evaluated weights of the best epoch (the EMA's where there is one) and what identifies them.

    Only last.pt resumes, so best.pt leaves out the optimizer state and RNGs: as a copy of the whole
    state it was as large as last.pt (150 MB for VGG-A), uploaded again at every improving epoch.
    """
    return {**{k: state[k] for k in ("format", "cell", "config", "epoch", "best")}, "model": state["best_state"]}


class CellLogger:
    """Logs one cell to its child run: per epoch a checkpoint, then one batched metrics request.

    Epochs are shipped by a background worker, in order, so training never waits on the store;
    `resume` holds the checkpoint to continue from when this is a resumed run.
    """

    def __init__(self, store: tracking.Store, run_id: str, resume: dict[str, Any] | None = None, logged: set[int] | None = None):
        self.store, self.run_id, self.resume = store, run_id, resume
        self._logged = set(logged or ())  # steps already in MLflow: never logged twice
        self._steps: list[Any] = []  # this epoch's per-step metrics, shipped with the epoch
        self._staging = Path(tempfile.mkdtemp(prefix="sweeper-ckpt-"))
        self._worker = checkpoints.SerialWorker()

    def log_epoch(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None, best: bool = False) -> None:
        """Queue an epoch: its checkpoint (stored first, as best.pt too when `best`), then its metrics, step = epoch."""
        step, steps, self._steps = int(metrics["epoch"]), self._steps, []
        self._worker.submit(lambda: self._ship_epoch(step, dict(metrics), checkpoint, best, steps))

    def _ship_epoch(self, step: int, metrics: dict[str, float], state: dict[str, Any] | None, best: bool,
                    steps: list[Any]) -> None:
        if state is not None:
            last = checkpoints.save(state, self._staging / str(step) / "last.pt")
            if best:  # before last.pt: a crash in between resumes from the previous epoch and redoes this one
                best_pt = checkpoints.save(best_weights(state), last.with_name("best.pt"))
                tracking.log_files(self.store, self.run_id, [best_pt], "checkpoints")
            tracking.log_files(self.store, self.run_id, [last], "checkpoints")
            shutil.rmtree(last.parent, ignore_errors=True)
        if step not in self._logged:
            tracking.log_batch(self.store, self.run_id, tracking.epoch_metrics(metrics, step) + steps)
            self._logged.add(step)

    def log_step(self, metrics: dict[str, float], step: int) -> None:
        """Per-step metrics (analysis probes, step loss) at step = the global training step.

        Kept in memory and sent with the epoch's metrics, after its checkpoint: a request per
        step would hold training back, and a resumed epoch must not log its steps twice.
        """
        self._steps.extend(tracking.epoch_metrics(metrics, step))

    def relog(self, history: list[dict[str, float]]) -> int:
        """Log the epochs of a resumed checkpoint that MLflow lacks (killed between checkpoint and metrics)."""
        missing = [h for h in history if int(h["epoch"]) not in self._logged]
        tracking.log_steps(self.store, self.run_id, missing)
        self._logged.update(int(h["epoch"]) for h in missing)
        return len(missing)

    def flush(self) -> None:
        """Wait until every queued epoch is stored; raises a storing error."""
        self._worker.drain()

    def close(self) -> None:
        """Flush and stop the worker; the run can then be terminated."""
        try:
            self._worker.close()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)

    def log_summary(self, summary: dict[str, float]) -> None:
        """Final metrics (test accuracy, best epoch, parameter count), at step 0."""
        self.flush()
        tracking.log_metrics(self.store, self.run_id, summary, 0)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Extra tags known only once training started (device, resolved precision)."""
        tracking.set_tags(self.store, self.run_id, tags)

    def log_files(self, paths: list[Path], artifact_path: str) -> list[str]:
        """Log local files into one artifact folder of the run (figures)."""
        return tracking.log_files(self.store, self.run_id, paths, artifact_path)

    def log_model(self, model: Any, example: Any) -> str:
        """The model as an MLflow model of the run; returns its `models:/` URI (also the tag sweeper.model_uri)."""
        return tracking.log_model(self.store, self.run_id, model, example)


def _last_checkpoint(store: tracking.Store, run_id: str, cell_id: str) -> dict[str, Any] | None:
    """The run's checkpoints/last.pt, or None when it has none (or one that does not read)."""
    if not tracking.has_artifact(store, run_id, "checkpoints/last.pt"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            state = checkpoints.load(tracking.download_artifact(store, run_id, "checkpoints/last.pt", Path(tmp)))
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint means start afresh, not crash
            print(f"warning: run {run_id}: checkpoint unreadable ({type(exc).__name__}: {exc}); not resuming it.", file=sys.stderr)
            return None
    ours = isinstance(state, dict) and state.get("cell") == cell_id and state.get("format") == checkpoints.FORMAT
    return state if ours else None


def resumable_run(store: tracking.Store, exp_id: str, cell_id: str) -> tuple[str, dict[str, Any]] | None:
    """The newest interrupted run of a cell (RUNNING or KILLED, not pruned) that has a last checkpoint.

    A run of a dead process on this machine with no checkpoint (killed in its first epoch) is
    marked KILLED on the way, so tables stop showing it running; live processes' runs are left alone.
    """
    for run in tracking.search(store, exp_id, f"tags.`{TAG}cell` = '{cell_id}' and tags.`{TAG}role` = 'cell'"):
        tags, status = run.data.tags, run.info.status
        if status not in ("RUNNING", "KILLED") or TAG + "pruned" in tags or tags.get(TAG + "state") == "pruned":
            continue
        if checkpoints.alive_elsewhere(tags.get(TAG + "worker", "")):
            continue
        state = _last_checkpoint(store, run.info.run_id, cell_id)
        if state is not None:
            return run.info.run_id, state
        if status == "RUNNING" and tags.get(TAG + "worker", "").rpartition(":")[0] == platform.node():
            tracking.end_run(store, run.info.run_id, "KILLED")  # its process here is dead; another host's may be alive
    return None


def _start(store: tracking.Store, exp_id: str, parent_id: str, cell: Cell, spec: Spec, profile: str | None,
           extra_tags: dict[str, str]) -> CellLogger:
    """Resume the cell's interrupted run in place, or create its run with params, tags and config."""
    ours = {TAG + "worker": checkpoints.worker_id(), TAG + "state": "running", **tracking.environment_tags(), **extra_tags}
    found = resumable_run(store, exp_id, cell.id)
    if found is not None:
        run_id, state = found
        resumes = int(tracking.mark_running(store, run_id).get(TAG + "resumes", "0")) + 1
        log = CellLogger(store, run_id, resume=state, logged=tracking.logged_steps(store, run_id, "train_loss"))
        log.set_tags({**ours, TAG + "resumes": str(resumes), TAG + "resumed_from_epoch": str(state["epoch"])})
        log.relog(state["history"])
        return log
    tags = {
        "mlflow.parentRunId": parent_id,
        TAG + "role": "cell",
        TAG + "spec": spec.name,
        TAG + "row": cell.label,
        TAG + "row_index": str(cell.row),
        TAG + "seed": str(cell.seed),
        TAG + "profile": profile or "default",
        TAG + "cell": cell.id,  # the config hash
        **ours,  # extra_tags: the sweeper's study name and trial number
    }
    return CellLogger(store, tracking.create_cell_run(store, exp_id, cell, tags))


def _stop(log: CellLogger, status: str, tags: dict[str, str]) -> None:
    """Flush what can be flushed, tag why, then terminate: an interrupted run keeps every stored epoch."""
    try:
        log.close()
    except Exception as exc:  # noqa: BLE001 - the first error is the one to report
        tags.setdefault(TAG + "error", f"while flushing: {type(exc).__name__}: {exc}"[:5000])
    try:
        log.set_tags(tags)
        tracking.end_run(log.store, log.run_id, status)
    except Exception as exc:  # noqa: BLE001 - the store is gone: the run stays RUNNING and resumable
        print(f"warning: could not mark run {log.run_id} {status} ({type(exc).__name__}: {exc})", file=sys.stderr)


@contextmanager
def cell_run(store: tracking.Store, exp_id: str, parent_id: str, cell: Cell, spec: Spec, profile: str | None,
             extra_tags: dict[str, str] | None = None) -> Iterator[CellLogger]:
    """The cell's child run, new or resumed: FINISHED, FAILED (error tag) or KILLED (Ctrl-C, pruned) at the end."""
    log = _start(store, exp_id, parent_id, cell, spec, profile, extra_tags or {})
    try:
        yield log
        log.close()
    except GeneratorExit:  # abandoned unclosed (garbage collected): leave the run as a killed process would
        raise
    except KeyboardInterrupt:
        _stop(log, "KILLED", {TAG + "state": "interrupted"})
        raise
    except Pruned as exc:  # stopped early by the pruner: not a failure, and not finished
        _stop(log, "KILLED", {TAG + "state": "pruned", TAG + "pruned": str(exc) or "true"})
        raise
    except Exception as exc:
        _stop(log, "FAILED", {TAG + "state": "failed", TAG + "error": f"{type(exc).__name__}: {exc}"[:5000]})
        raise
    log.set_tags({TAG + "state": "finished"})
    tracking.end_run(store, log.run_id, "FINISHED")
