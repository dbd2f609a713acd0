"""The entry points of a sweep: `run` (here, or in local worker processes), `worker`, `status`."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from rich.console import Console

from sweeper.runs import cellrun, process, tracking
from sweeper.schema.spec import Spec
from sweeper.sweep import ledger, workers
from sweeper.sweep.ledger import Snapshot, SweepReport
from sweeper.sweep.loop import close_parent, plan, snapshot, work
from sweeper.sweep.study import HEARTBEAT, local_dir, open_sweep, storage_url
from sweeper.training.data import Split
from sweeper.training.device import pick_device


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
    """Train the spec's unfinished cells: in this process, or in `jobs` worker processes (one per device)."""
    console = console or Console()
    pick_device(device)  # a device torch does not know is the user's error, before anything is written
    parallel = workers.assignments(jobs, devices, device) if (jobs or 1) > 1 or devices else None
    if parallel and data is not None:
        raise ValueError("parallel workers load the prepared data set (SWEEPER_DATA_DIR); pass data only with jobs=1")
    sw = open_sweep(
        spec_path, profile, storage=storage, tracking_uri=tracking_uri, heartbeat=heartbeat, check_data=data is None
    )
    plan(sw, retry_failed)
    if not parallel:
        return work(sw, device=device, data=data, console=console)
    before = snapshot(sw)
    if before.idle():
        console.print(f"[green]{sw.spec.name}: all {before.total} cells already done or closed; nothing to train.[/]")
        return ledger.report(sw.spec, before, before)
    parent = tracking.sweep_run(
        sw.store, sw.exp_id, sw.spec, sw.profile, sw.path.read_text(), cellrun.environment_tags()
    )  # one, for all workers
    launch = workers.Launch(
        sw.path,
        sw.spec.name,
        profile,
        storage_url(storage, sw.store.uri),
        sw.store.uri,
        device,
        heartbeat,
        local_dir(sw.store.uri) / "workers",
    )
    status = "KILLED"
    try:
        workers.run_local(launch, parallel, poll=lambda: snapshot(sw), console=console)
        status = "FINISHED"
    finally:
        after = close_parent(sw, parent, status)
    return ledger.report(sw.spec, before, after)


def worker(
    spec_path: str | Path,
    profile: str | None = None,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    heartbeat: int = HEARTBEAT,
    index: int | None = None,
    console: Console | None = None,
) -> SweepReport:
    """One worker of a sweep (of `sweeper run --jobs`, or one per machine against a shared storage)."""
    if threads:  # the trainer reads SWEEPER_THREADS: a fixed share, not "auto"
        os.environ["SWEEPER_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    offset = index if index is not None else os.getpid()  # seeded samplers must differ between workers
    sw = open_sweep(
        spec_path,
        profile,
        storage=storage,
        tracking_uri=tracking_uri,
        heartbeat=heartbeat,
        seed_offset=offset,
        check_data=True,
    )
    plan(sw)
    name = process.worker_id() + (f" #{index}" if index is not None else "")
    return work(sw, device=device, console=console, worker=name)


def status(
    spec_path: str | Path, profile: str | None = None, *, storage: str | None = None, tracking_uri: str | None = None
) -> tuple[Snapshot, Spec]:
    """Cells done, running, failed, pruned and left, from the study and MLflow; and the spec it read."""
    sw = open_sweep(spec_path, profile, storage=storage, tracking_uri=tracking_uri)
    return snapshot(sw), sw.spec
