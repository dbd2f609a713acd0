"""Workers on a SLURM cluster: one job array (submitit), each task a `sweeper worker` on the shared
Optuna storage and MLflow server. Only this module imports submitit.

Secrets stay out of argv and out of the pickled task: the storage URL and the MLflow URI travel in
the environment that sbatch exports to the job (SWEEPER_STORAGE, MLFLOW_TRACKING_URI).
A task told by SLURM that it is preempted or near its time limit (USR2, `--signal`) or being killed
(SIGTERM) stops its cell as Ctrl-C does: the run ends KILLED with its checkpoint, the trial is
marked interrupted, so the next worker to start resumes it. With `requeue`, submitit's
checkpointing then puts the task back in the queue.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import submitit
from submitit.core.utils import DelayedSubmission

from sweeper.errors import UserError, warn
from sweeper.schema.spec import load_spec
from sweeper.settings import get_settings
from sweeper.sweep.launchers import ENV_STORAGE, Launched, Request, WorkerState, worker_environment
from sweeper.sweep.loop import plan, worker
from sweeper.sweep.study import HEARTBEAT, local_dir, open_sweep, storage_url

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass
class SlurmOptions:
    """What `sweeper run --launcher slurm` asks of SLURM for every worker of the array."""

    workers: int = 2
    gpus_per_worker: int = 0
    cpus_per_worker: int = 1
    partition: str | None = None
    time: str = "4:00:00"
    requeue: bool = False
    extra: dict[str, str] = field(default_factory=dict)  # --opt options.KEY=VALUE: any other sbatch option


def slurm_options(settings: Any) -> SlurmOptions:
    """The array's settings from the launcher block (spec, profile, --opt), SLURM's defaults elsewhere."""
    given = {k: v for k, v in settings.model_dump(exclude={"name", "profiles"}).items() if v is not None}
    extra = given.pop("options", {})
    return SlurmOptions(**given, extra=dict(extra))


def minutes(text: str) -> int:
    """SLURM's time formats (MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) in whole minutes, rounded up."""
    m = _TIME.match(text.strip())
    if not m:
        raise UserError(f"time '{text}' is not a SLURM time like 30, 4:00:00 or 1-12:00:00.")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    assert a is not None
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + (b or 0) * 60 + c
    else:  # MM or MM:SS
        seconds = a * 60 + (b or 0)
    return max(1, -(-seconds // 60))


def check_reachable(storage: str | None, tracking_uri: str) -> None:
    """Refuse stores that live on this machine only: array tasks run on other nodes."""
    if not storage or storage.startswith("sqlite"):
        raise UserError(
            "a SLURM sweep needs an Optuna storage every node can reach, but the storage is "
            f"{'the local sqlite file beside the MLflow store' if not storage else 'a sqlite file'}. Pass "
            "--storage postgresql://USER@HOST:PORT/DB (a password goes in SWEEPER_STORAGE or ~/.pgpass, "
            "not on the command line); README 'On a SLURM cluster' shows the setup."
        )
    if not tracking_uri.startswith(("http://", "https://")):
        shown = tracking_uri.split("://", 1)[0] + "://..." if "://" in tracking_uri else tracking_uri
        raise UserError(
            f"a SLURM sweep needs an MLflow server every node can reach, but the tracking URI is {shown}, "
            "a store on this machine. Start `sweeper server --host 0.0.0.0 --allow-remote` (or use your "
            "team's server) and pass --tracking-uri http://HOST:PORT or set MLFLOW_TRACKING_URI."
        )


def task_device(device: str, gpus_per_worker: int) -> str:
    """The --device of every array task: `cuda` when the tasks get GPUs, so a broken driver fails loudly
    instead of `auto` training on one CPU core for hours; a GPU device without GPUs is refused."""
    if gpus_per_worker > 0:
        if device not in ("auto", "cuda"):
            raise UserError(
                f"gpus_per_worker={gpus_per_worker} gives each task GPUs, but --device is '{device}'; "
                "use --device cuda (or auto), or --opt gpus_per_worker=0 for CPU workers."
            )
        if gpus_per_worker > 1:
            warn(
                f"gpus_per_worker={gpus_per_worker}: each worker trains one cell on one GPU, so "
                f"{gpus_per_worker - 1} of its GPUs stay idle; ask for more --workers with one GPU each instead."
            )
        return "cuda"
    if device.startswith("cuda"):
        raise UserError(
            f"--device {device} but the tasks get no GPUs; add --opt gpus_per_worker=1 (or the spec's launcher.gpus_per_worker)."
        )
    # A task given no GPU may still see the node's GPUs (no cgroup device limits): `auto` would then train
    # on a GPU another job owns.
    return "cpu" if device == "auto" else device


def log_dir(spec_name: str, tracking_uri: str | None = None) -> Path:
    """Where the array's submitit files and each task's logs go: mlruns/slurm/NAME (a shared filesystem)."""
    return local_dir(get_settings().resolved_tracking_uri(tracking_uri)).resolve() / "slurm" / spec_name


class ArrayTask(submitit.helpers.Checkpointable):
    """One array task: a `sweeper worker` in this process, stopped cleanly by SLURM's signals."""

    def __init__(
        self, spec_path: Path, profile: str | None, device: str, heartbeat: int, threads: int, requeue: bool
    ) -> None:
        self.spec_path, self.profile, self.device = spec_path, profile, device
        self.heartbeat, self.threads, self.requeue = heartbeat, threads, requeue

    def __call__(self, index: int) -> str:
        """Claim and train cells until none is left; on USR2 stop the cell, then let submitit requeue."""
        with _stop_on_signals() as caught:
            try:
                report = worker(
                    self.spec_path,
                    self.profile,
                    storage=os.environ.get(ENV_STORAGE),
                    device=self.device,
                    threads=self.threads,
                    heartbeat=self.heartbeat,
                    index=index,
                )
            except KeyboardInterrupt:
                if signal.SIGUSR2 not in caught.signals or caught.submitit_handler is None:
                    raise
                print(f"stopped by signal {caught.signals}: the cell's run is KILLED with its checkpoint", flush=True)
                caught.submitit_handler(signal.SIGUSR2, None)  # checkpoint() below, requeue, exit
                raise
        return f"{len(report.finished)} finished, {len(report.pruned)} pruned, {len(report.failed)} failed"

    # submitit reads None as 'do not requeue': without --requeue a stopped task stays stopped
    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission | None:  # type: ignore[override]
        """Requeue the same task (its cell resumes from its MLflow checkpoint), when asked to."""
        return DelayedSubmission(self, *args, **kwargs) if self.requeue else None


@dataclass
class _Caught:
    signals: list[int] = field(default_factory=list)
    submitit_handler: Any = None


@contextmanager
def _stop_on_signals() -> Iterator[_Caught]:
    """The first SIGTERM or USR2 raises KeyboardInterrupt (the worker's clean stop); later ones are only noted."""
    handler = signal.getsignal(signal.SIGUSR2)  # submitit's checkpoint-and-requeue, inside a SLURM job
    caught = _Caught(submitit_handler=handler if callable(handler) else None)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}

    def stop(signum: int, _frame: FrameType | None) -> None:
        caught.signals.append(signum)
        if len(caught.signals) == 1:
            raise KeyboardInterrupt(f"signal {signum}")

    for s in previous:
        signal.signal(s, stop)
    try:
        yield caught
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for sbatch to export to the job, and restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def submit(
    spec_path: str | Path,
    profile: str | None,
    opts: SlurmOptions,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    device: str = "auto",
    heartbeat: int = HEARTBEAT,
) -> tuple[list[str], Path]:
    """Queue the spec's cells, then submit `opts.workers` workers as one job array; returns its task ids and log dir."""
    storage = storage or os.environ.get(ENV_STORAGE)
    uri = get_settings().resolved_tracking_uri(tracking_uri)
    check_reachable(storage, uri)
    device = task_device(device, opts.gpus_per_worker)  # before anything is written
    folder = log_dir(load_spec(spec_path).name, uri)
    try:  # SLURM must answer here before the study and its queued cells are written
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
    except RuntimeError as exc:
        raise UserError(f"cannot submit to SLURM from here: {exc} (`sinfo` must work on this machine).") from None
    sw = open_sweep(spec_path, profile, storage=storage, tracking_uri=uri, heartbeat=heartbeat)
    plan(sw)
    folder.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = dict(opts.extra)
    if opts.requeue:
        extra["requeue"] = True  # SLURM may requeue it on preemption too
    executor.update_parameters(
        job_name=f"sweeper-{sw.spec.name}",
        partition=opts.partition,
        time=minutes(opts.time),
        cpus_per_task=opts.cpus_per_worker,
        gpus_per_node=opts.gpus_per_worker or None,
        array_parallelism=opts.workers,
        signal_delay_s=120,
        additional_parameters=extra,
    )
    task = ArrayTask(sw.path.resolve(), profile, device, heartbeat, opts.cpus_per_worker, opts.requeue)
    env = worker_environment(storage_url(storage, uri), uri)
    try:
        with _environment(env):
            jobs = executor.map_array(task, list(range(opts.workers)))
    except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as exc:
        raise UserError(f"sbatch refused the array: {str(exc).strip()[:600]}") from None
    ids = [job.job_id for job in jobs]
    with (folder / "jobs").open("a") as f:
        f.write(" ".join(ids) + "\n")
    return ids, folder


def array_states(spec_name: str, tracking_uri: str | None = None) -> list[tuple[str, str, str]]:
    """(task id, SLURM state, reason or node) of every array submitted for this spec that SLURM still knows."""
    jobs = log_dir(spec_name, tracking_uri) / "jobs"
    if not jobs.is_file():
        return []
    arrays = sorted({i.split("_")[0] for i in jobs.read_text().split()})
    try:
        out = subprocess.run(
            ["squeue", "--states=all", "--array", "-h", "-o", "%i|%T|%R", "-j", ",".join(arrays)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return [(i, "unknown (squeue not available)", "") for i in arrays]
    rows = [tuple(line.split("|", 2)) for line in out.stdout.splitlines() if line.count("|") == 2]
    return [(r[0], r[1], r[2]) for r in rows]


def logs(spec_name: str, tracking_uri: str | None = None, task: str | None = None) -> list[Path]:
    """Each array task's stdout and stderr files, oldest array first (`sweeper logs`)."""
    folder = log_dir(spec_name, tracking_uri)
    files = sorted(folder.glob("*_log.out")) + sorted(folder.glob("*_log.err"))
    if task is not None:
        files = [f for f in files if f.name.startswith(f"{task}_") or f"_{task}_" in f.name[: f.name.index("_log")]]
    return sorted(files, key=lambda f: (f.stat().st_mtime, f.name))


class SlurmLauncher:
    """Workers as one SLURM job array; `sweeper status` and `sweeper logs` read the array's states and logs."""

    def launch(self, request: Request) -> Launched:
        """Queue the spec's cells and submit the array; returns at once with its task ids."""
        ids, folder = submit(
            request.spec_path,
            request.profile,
            slurm_options(request.settings),
            storage=request.storage,
            tracking_uri=request.tracking_uri,
            device=request.device,
            heartbeat=request.heartbeat,
        )
        return Launched(submitted=ids, logs=folder)

    def states(self, spec_name: str, tracking_uri: str | None) -> list[WorkerState]:
        """Each array task's SLURM state and node (or reason)."""
        return [WorkerState(task, state, where) for task, state, where in array_states(spec_name, tracking_uri)]

    def logs(self, spec_name: str, tracking_uri: str | None, worker: str | None = None) -> list[Path]:
        """Each array task's stdout and stderr, oldest array first."""
        return logs(spec_name, tracking_uri, worker)
