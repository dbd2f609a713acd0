"""The local launcher: the sweep's workers on this machine (this process, or one worker process per GPU
or per share of the CPU), shown with progress until they finish."""

from __future__ import annotations

from pathlib import Path

from sweeper.settings import get_settings
from sweeper.sweep import launch
from sweeper.sweep.launchers import Launched, Request, WorkerState
from sweeper.sweep.study import local_dir


class LocalLauncher:
    """Trains here: one process, or `workers` worker processes (one per GPU of `devices`)."""

    def launch(self, request: Request) -> Launched:
        """Train every unfinished cell on this machine and wait for it."""
        s = request.settings
        report = launch.run(
            request.spec_path,
            request.profile,
            tracking_uri=request.tracking_uri,
            device=request.device,
            data=request.data,
            console=request.console,
            jobs=s.workers,
            devices=s.devices,
            storage=request.storage,
            retry_failed=request.retry_failed,
            heartbeat=request.heartbeat,
        )
        return Launched(report=report)

    def states(self, spec_name: str, tracking_uri: str | None) -> list[WorkerState]:
        """Local workers are the children of a `sweeper run` still in a terminal: the cells' states say it all."""
        return []

    def logs(self, spec_name: str, tracking_uri: str | None, worker: str | None = None) -> list[Path]:
        """The worker processes' logs of `run --workers N` (mlruns/workers/SPEC-workerN.log)."""
        folder = local_dir(get_settings().resolved_tracking_uri(tracking_uri)) / "workers"
        files = sorted(folder.glob(f"{spec_name}-worker*.log"))
        return [f for f in files if worker is None or f.stem.endswith(f"worker{worker}")]
