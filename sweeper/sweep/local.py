"""The local launcher: the sweep's workers on this machine (this process, or one worker process per GPU
or per share of the CPU), shown with progress until they finish; and `run`, the same from Python."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from sweeper.runs import cellrun, tracking
from sweeper.schema.launcher import LocalSettings
from sweeper.settings import get_settings
from sweeper.sweep import ledger, workers
from sweeper.sweep.launchers import Launched, Request, WorkerState
from sweeper.sweep.ledger import SweepReport
from sweeper.sweep.loop import close_parent, plan, snapshot, work
from sweeper.sweep.study import HEARTBEAT, local_dir, open_sweep, storage_url
from sweeper.training.data import Split
from sweeper.training.device import pick_device


class LocalLauncher:
    """Trains here: one process, or `workers` worker processes (one per GPU of `devices`)."""

    def launch(self, request: Request) -> Launched:
        """Train every unfinished cell on this machine and wait for it."""
        return Launched(report=_train_here(request))

    def states(self, spec_name: str, tracking_uri: str | None) -> list[WorkerState]:
        """Local workers are the children of a `sweeper run` still in a terminal: the cells' states say it all."""
        return []

    def logs(self, spec_name: str, tracking_uri: str | None, worker: str | None = None) -> list[Path]:
        """The worker processes' logs of `run --workers N` (mlruns/workers/SPEC-workerN.log)."""
        folder = local_dir(get_settings().resolved_tracking_uri(tracking_uri)) / "workers"
        files = sorted(folder.glob(f"{spec_name}-worker*.log"))
        return [f for f in files if worker is None or f.stem.endswith(f"worker{worker}")]


def run(
    spec_path: str | Path,
    profile: str | None = None,
    *,
    tracking_uri: str | None = None,
    device: str = "auto",
    data: tuple[Split, Split] | None = None,
    console: Console | None = None,
    jobs: int | None = None,
    devices: workers.GpuList = None,
    storage: str | None = None,
    retry_failed: bool = False,
    heartbeat: int = HEARTBEAT,
) -> SweepReport:
    """Train the spec's unfinished cells here, in this process or `jobs` worker processes (scripts and tests)."""
    settings = LocalSettings(workers=jobs, devices=devices)
    request = Request(
        Path(spec_path), profile, settings, storage, tracking_uri, device, heartbeat, retry_failed, console or Console()
    )
    request.data = data
    return _train_here(request)


def _train_here(request: Request) -> SweepReport:
    """In this process, or in worker processes (one per device) that this one watches until they finish."""
    device, data, console, s = request.device, request.data, request.console, request.settings
    pick_device(device)  # a device torch does not know is the user's error, before anything is written
    parallel = workers.assignments(s.workers, s.devices, device) if (s.workers or 1) > 1 or s.devices else None
    if parallel and data is not None:
        raise ValueError("parallel workers load the prepared data set (SWEEPER_DATA_DIR); pass data only with jobs=1")
    sw = open_sweep(
        request.spec_path,
        request.profile,
        storage=request.storage,
        tracking_uri=request.tracking_uri,
        heartbeat=request.heartbeat,
        check_data=data is None,
    )
    plan(sw, request.retry_failed)
    if not parallel:
        return work(sw, device=device, data=data, console=console)
    before = snapshot(sw)
    if before.idle():
        console.print(f"[green]{sw.spec.name}: all {before.total} cells already done or closed; nothing to train.[/]")
        return ledger.report(sw.spec, before, before)
    parent = tracking.sweep_run(
        sw.store, sw.exp_id, sw.spec, sw.profile, sw.path.read_text(), cellrun.environment_tags()
    )  # one, for all workers
    started = workers.Launch(
        sw.path,
        sw.spec.name,
        request.profile,
        storage_url(request.storage, sw.store.uri),
        sw.store.uri,
        device,
        request.heartbeat,
        local_dir(sw.store.uri) / "workers",
    )
    status = "KILLED"
    try:
        workers.run_local(started, parallel, poll=lambda: snapshot(sw), console=console)
        status = "FINISHED"
    finally:
        after = close_parent(sw, parent, status)
    return ledger.report(sw.spec, before, after)
