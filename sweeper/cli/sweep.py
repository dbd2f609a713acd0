"""Commands that train: `run` (through a launcher), `worker` (one worker of a sweep), `status`, `logs`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Optional

import typer

from sweeper.cli.common import (
    DeviceOpt,
    HeartbeatOpt,
    LauncherOpt,
    ProfileOpt,
    SpecArg,
    StorageOpt,
    UriOpt,
    command,
    console,
    err_console,
    say,
    sigterm_as_interrupt,
)
from sweeper.errors import UserError

if TYPE_CHECKING:
    from sweeper.schema.spec import Spec


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    command(app)(run)
    command(app)(worker)
    command(app)(status)
    command(app)(logs)


def run(
    spec: SpecArg,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    device: DeviceOpt = "auto",
    launcher: LauncherOpt = None,
    workers: Annotated[
        Optional[int],
        typer.Option(
            "--workers",
            "--jobs",
            "-j",
            min=1,
            help="Workers: local processes (default one per --devices GPU, else 1), or SLURM array tasks.",
        ),
    ] = None,
    devices: Annotated[
        Optional[str],
        typer.Option(
            help="Local: GPUs for the workers, e.g. 0,1,2,3 (numbered as this process sees them, within "
            "CUDA_VISIBLE_DEVICES) or all: one worker per GPU."
        ),
    ] = None,
    opt: Annotated[
        Optional[list[str]],
        typer.Option(
            "--opt",
            help="A launcher setting as key=value; repeat. SLURM: gpus_per_worker, cpus_per_worker, partition, "
            "time, requeue, and options.KEY=VALUE for any other sbatch option.",
        ),
    ] = None,
    storage: StorageOpt = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Train cells that failed with an error again.")
    ] = False,
    heartbeat: HeartbeatOpt = 10,
) -> None:
    """Train every unfinished cell of a spec and log it to MLflow; finished cells are skipped."""
    from sweeper.schema.spec import load_spec
    from sweeper.sweep.launchers import Request, parse_options, settings_for
    from sweeper.sweep.launchers import launcher as launcher_named
    from sweeper.tables.summary import ui_link

    options = parse_options(opt or [])
    options |= {"workers": workers} if workers else {}
    options |= {"devices": device_list(devices)} if devices else {}
    settings = settings_for(spec, profile, launcher, options)
    chosen = launcher_named(settings.name, spec)
    request = Request(spec, profile, settings, storage, tracking_uri, device, heartbeat, retry_failed, console)
    with sigterm_as_interrupt():
        launched = chosen.launch(request)
    if launched.submitted:
        say(
            f"submitted {len(launched.submitted)} {settings.name} workers: {' '.join(launched.submitted)}\n"
            f"  logs: {launched.logs}   (`sweeper logs {spec}`)\n  progress: sweeper status {spec}"
            + (f" -p {profile}" if profile else "")
        )
    say(ui_link(load_spec(spec).name, tracking_uri))
    report = launched.report
    if report is not None:  # a search ends with its answer: the best trial, printed and on the parent run
        from sweeper.sweep.answer import announce

        announce(spec, profile, tracking_uri, console, storage)
    if report is not None and report.failed:
        err_console.print(
            f"[red]{len(report.failed)} cell(s) failed:[/] {', '.join(report.failed)} "
            "(errors are tagged on their MLflow runs; `--retry-failed` trains them again)."
        )
        raise typer.Exit(1)


def device_list(devices: str) -> list[int] | Literal["all"]:
    """--devices as GPU numbers, or "all"."""
    if devices.strip() == "all":
        return "all"
    try:
        return [int(d) for d in devices.split(",") if d.strip()]
    except ValueError:
        raise UserError(f"--devices '{devices}' is not a list of GPU numbers like 0,1,2,3, or all.") from None


def worker(
    spec: SpecArg,
    profile: ProfileOpt = None,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    device: DeviceOpt = "auto",
    threads: Annotated[
        Optional[int], typer.Option(min=1, help="CPU threads for training (torch.set_num_threads).")
    ] = None,
    heartbeat: HeartbeatOpt = 10,
    index: Annotated[Optional[int], typer.Option(hidden=True, help="Worker number (set by `run --workers`).")] = None,
) -> None:
    """Join a sweep as one worker: claim cells from the shared storage until none is left (one per machine or GPU)."""
    from sweeper import sweep

    with sigterm_as_interrupt():
        report = sweep.worker(
            spec,
            profile,
            storage=storage,
            tracking_uri=tracking_uri,
            device=device,
            threads=threads,
            heartbeat=heartbeat,
            index=index,
            console=console,
        )
    say(f"worker done: {len(report.finished)} finished, {len(report.pruned)} pruned, {len(report.failed)} failed")


def status(
    spec: SpecArg,
    profile: ProfileOpt = None,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    launcher: LauncherOpt = None,
) -> None:
    """Print how many cells of a sweep are done, running, failed, pruned and left, what runs now, and the workers."""
    from sweeper import sweep
    from sweeper.sweep.launchers import launcher as launcher_named
    from sweeper.sweep.launchers import watched
    from sweeper.tables.summary import ui_link

    snap, loaded = sweep.status(spec, profile, storage=storage, tracking_uri=tracking_uri)
    say(study_line(loaded, profile, storage, tracking_uri))
    left = snap.count("left") if snap.extra_left is not None else f"{snap.count('left')}+ (time budget)"
    say(
        f"done {snap.count('done')}, running {snap.count('running')}, failed {snap.count('failed')}, "
        f"pruned {snap.count('pruned')}, left {left}"
    )
    for worker_name, cell, epoch, epochs in snap.active:
        say(f"  running: {cell} on {worker_name}, epoch {epoch}/{epochs}")
    for cid, state in snap.states.items():
        if state == "failed":
            say(f"  failed: {snap.names[cid]}")
    for name in watched(loaded.launcher, profile, launcher):
        for w in launcher_named(name, spec).states(loaded.name, tracking_uri):
            say(f"  {name} {w.worker}: {w.state}" + (f" ({w.where})" if w.where else ""))
    say(ui_link(loaded.name, tracking_uri))


def study_line(spec: Spec, profile: str | None, storage: str | None, tracking_uri: str | None) -> str:
    """The study and its storage, on one line: what Optuna's own tools (optuna-dashboard) open."""
    from sweeper.secrets import mask_uri
    from sweeper.settings import get_settings
    from sweeper.sweep.study import storage_url, study_name

    url = storage_url(storage, get_settings().resolved_tracking_uri(tracking_uri))
    return f"study {study_name(spec, profile)} in {mask_uri(url)}"


def logs(
    spec: SpecArg,
    worker: Annotated[
        Optional[str], typer.Option("--worker", "--task", help="One worker, e.g. a SLURM task 1234_0 or just 0.")
    ] = None,
    lines: Annotated[int, typer.Option(min=1, help="Last lines of each log.")] = 40,
    tracking_uri: UriOpt = None,
    launcher: LauncherOpt = None,
) -> None:
    """Print the last lines of each worker's log (stdout and stderr) of a spec's sweep, as its launcher keeps them."""
    from sweeper.schema.spec import load_spec
    from sweeper.sweep.launchers import launcher as launcher_named
    from sweeper.sweep.launchers import watched

    loaded = load_spec(spec)
    names = watched(loaded.launcher, None, launcher)
    files = [f for name in names for f in launcher_named(name, spec).logs(loaded.name, tracking_uri, worker)]
    if not files:
        raise UserError(
            f"no worker logs of {' or '.join(names)} workers for {spec}"
            + (f" (task or worker {worker!r})." if worker else " (has the sweep run with workers yet?).")
        )
    for path in files:
        text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        console.print(f"==> {path} <==\n{text}", highlight=False, markup=False, soft_wrap=True)
