"""The life of one cell's MLflow run: created or resumed in place, one checkpoint and one metrics
request per epoch (shipped in order by a background worker), and how it ends.

Each epoch's checkpoint is stored before its metrics are logged, so a run killed at any moment
has a `checkpoints/last.pt` at least as new as its metric history; resuming re-logs what the
checkpoint has and MLflow lacks, and every step appears once. Built on tracking.py's calls: no
MLflow import here (model.py exports the trained network).
"""

from __future__ import annotations

import functools
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweeper.errors import Pruned, warn
from sweeper.runs import checkpoints, faults, process, system, tracking
from sweeper.runs import model as model_log
from sweeper.schema import plugins
from sweeper.schema.spec import Cell, Spec
from sweeper.training import state as training_state
from sweeper.training.state import Checkpoint
from sweeper.vocab import Tag, profile_tag


@functools.cache
def environment_tags() -> dict[str, str]:
    """Versions and hardware that explain a result: git commit (and whether it was dirty), torch, CUDA, host."""
    tags = {
        Tag.TORCH: torch.__version__,
        Tag.CUDA: str(torch.version.cuda),
        Tag.CUDNN: str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "None",
        Tag.HOST: platform.node(),
    }
    # The commit of the code that trained, wherever the command was started from.
    repo = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            tags[Tag.GIT_COMMIT] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            tags[Tag.GIT_DIRTY] = str(bool(dirty.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


class CellLogger:
    """Logs one cell to its child run: per epoch a checkpoint, then one batched metrics request.

    Epochs are shipped by a background worker, in order, so training never waits on the store;
    `resume` holds the checkpoint to continue from when this is a resumed run.
    """

    def __init__(
        self, store: tracking.Store, run_id: str, resume: Checkpoint | None = None, logged: set[int] | None = None
    ):
        self.store, self.run_id, self.resume = store, run_id, resume
        self._logged = set(logged or ())  # steps already in MLflow: never logged twice
        self._steps: list[Any] = []  # this epoch's per-step metrics, shipped with the epoch
        self._staging = Path(tempfile.mkdtemp(prefix="sweeper-ckpt-"))
        self._worker = checkpoints.SerialWorker()
        self._system = system.start(store.uri, run_id, resume=resume is not None)

    def log_epoch(self, metrics: dict[str, float], checkpoint: Checkpoint | None = None, best: bool = False) -> None:
        """Queue an epoch: its checkpoint (stored first, as best.pt too when `best`), then its metrics, step = epoch."""
        step, steps, self._steps = int(metrics["epoch"]), self._steps, []
        self._worker.submit(lambda: self._ship_epoch(step, dict(metrics), checkpoint, best, steps))

    def _ship_epoch(
        self, step: int, metrics: dict[str, float], state: Checkpoint | None, best: bool, steps: list[Any]
    ) -> None:
        if state is not None:
            # On the worker thread: the device-to-host copy overlaps the next epoch's training.
            state = checkpoints.to_cpu(state)
            last = checkpoints.save(state, self._staging / str(step) / "last.pt")
            if best:  # before last.pt: a crash in between resumes from the previous epoch and redoes this one
                best_pt = checkpoints.save(training_state.best_weights(state), last.with_name("best.pt"))
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
        """Stop the system metrics, flush and stop the worker; the run can then be terminated."""
        system.stop(self._system)
        self._system = None
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
        return model_log.log_model(self.store, self.run_id, model, example)


def _last_checkpoint(store: tracking.Store, run_id: str, cell_id: str) -> Checkpoint | None:
    """The run's checkpoints/last.pt, or None when it has none (or one that does not read)."""
    if not tracking.has_artifact(store, run_id, "checkpoints/last.pt"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            state = checkpoints.load(tracking.download_artifact(store, run_id, "checkpoints/last.pt", Path(tmp)))
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint means start afresh, not crash
            warn(f"run {run_id}: checkpoint unreadable ({type(exc).__name__}: {exc}); not resuming it.")
            return None
    return training_state.checkpoint_of(state, cell_id)


def resumable_run(store: tracking.Store, exp_id: str, cell_id: str) -> tuple[str, Checkpoint] | None:
    """The newest interrupted run of a cell (RUNNING or KILLED, not pruned) that has a last checkpoint.

    A run of a dead process on this machine with no checkpoint (killed in its first epoch) is
    marked KILLED on the way, so tables stop showing it running; live processes' runs are left alone.
    """
    for run in tracking.search(store, exp_id, f"tags.`{Tag.CELL}` = '{cell_id}' and tags.`{Tag.ROLE}` = 'cell'"):
        tags, status = run.data.tags, run.info.status
        if status not in ("RUNNING", "KILLED") or Tag.PRUNED in tags or tags.get(Tag.STATE) == "pruned":
            continue
        if process.alive_elsewhere(tags.get(Tag.WORKER, "")):
            continue
        state = _last_checkpoint(store, run.info.run_id, cell_id)
        if state is not None:
            return run.info.run_id, state
        if status == "RUNNING" and process.on_this_host(tags.get(Tag.WORKER, "")):
            tracking.end_run(store, run.info.run_id, "KILLED")  # its process here is dead; another host's may be alive
    return None


@dataclass(frozen=True)
class SweepRecord:
    """Where a sweep's runs go, one value: the store, the experiment, the parent run, the spec and the profile."""

    store: tracking.Store
    exp_id: str
    parent: str
    spec: Spec
    profile: str | None


def _start(record: SweepRecord, cell: Cell, extra_tags: dict[str, str]) -> CellLogger:
    """Resume the cell's interrupted run in place, or create its run with params, tags and config."""
    store, exp_id, parent_id, spec, profile = record.store, record.exp_id, record.parent, record.spec, record.profile
    ours = {Tag.WORKER: process.worker_id(), Tag.STATE: "running", **environment_tags(), **extra_tags}
    found = resumable_run(store, exp_id, cell.id)
    if found is not None:
        run_id, state = found
        resumes = int(tracking.mark_running(store, run_id).get(Tag.RESUMES, "0")) + 1
        log = CellLogger(store, run_id, resume=state, logged=tracking.logged_steps(store, run_id, "train_loss"))
        try:
            # The sweep that resumes it owns it now: a run killed under one profile finishes under another.
            owner = {Tag.PARENT_RUN: parent_id, Tag.PROFILE: profile_tag(profile)}
            log.set_tags({**ours, **owner, Tag.RESUMES: str(resumes), Tag.RESUMED_FROM_EPOCH: str(state["epoch"])})
            log.relog(state["history"])
        except BaseException:
            log.close()  # its writer and system-metrics threads must not outlive a resume that failed
            raise
        return log
    tags = {
        Tag.PARENT_RUN: parent_id,
        Tag.ROLE: "cell",
        Tag.SPEC: spec.name,
        Tag.ROW: cell.label,
        Tag.ROW_INDEX: str(cell.row),
        Tag.SEED: str(cell.seed),
        Tag.PROFILE: profile_tag(profile),
        Tag.CELL: cell.id,  # the config hash
        **ours,  # extra_tags: the sweeper's study name and trial number
    }
    return CellLogger(store, tracking.create_cell_run(store, exp_id, cell, tags))


def _stop(log: CellLogger, status: str, tags: dict[str, str]) -> None:
    """Flush what can be flushed, tag why, then terminate: an interrupted run keeps every stored epoch."""
    try:
        log.close()
    except Exception as exc:  # noqa: BLE001 - the first error is the one to report
        tags.setdefault(Tag.ERROR, f"while flushing: {type(exc).__name__}: {exc}"[:5000])
    try:
        log.set_tags(tags)
        tracking.end_run(log.store, log.run_id, status)
    except Exception as exc:  # noqa: BLE001 - the store is gone: the run stays RUNNING and resumable
        warn(f"could not mark run {log.run_id} {status} ({type(exc).__name__}: {exc})")


@contextmanager
def cell_run(record: SweepRecord, cell: Cell, extra_tags: dict[str, str] | None = None) -> Iterator[CellLogger]:
    """The cell's child run, new or resumed: FINISHED, FAILED (error tag) or KILLED (Ctrl-C, pruned) at the end."""
    log = _start(record, cell, extra_tags or {})
    try:
        yield log
        log.close()
    except GeneratorExit:  # abandoned unclosed (garbage collected): leave the run as a killed process would
        raise
    except KeyboardInterrupt:
        _stop(log, "KILLED", {Tag.STATE: "interrupted"})
        raise
    except Pruned as exc:  # stopped early by the pruner: not a failure, and not finished
        _stop(log, "KILLED", {Tag.STATE: "pruned", Tag.PRUNED: str(exc) or "true"})
        raise
    except Exception as exc:
        stop = faults.diagnose(exc, record.store.artifact_root or Path.cwd())
        if stop is not None:  # the store's fault, not the cell's: interrupted, so the same command resumes it
            _stop(log, "KILLED", {Tag.STATE: "interrupted"})
            raise stop from exc
        _stop(log, "FAILED", {Tag.STATE: "failed", Tag.ERROR: plugins.raised_in_user_code(exc)[:5000]})
        raise
    log.set_tags({Tag.STATE: "finished"})
    tracking.end_run(record.store, log.run_id, "FINISHED")
