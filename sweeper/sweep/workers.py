"""Worker processes of `sweeper run --jobs N` on this machine: one GPU each, or a share of the CPU threads.

Each worker is a `sweeper worker` subprocess claiming cells through the study's storage, exactly as
a worker on another machine would; this module starts them, shows their progress and waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from sweeper.errors import UserError


@dataclass
class Launch:
    """What every worker of one sweep is started with."""

    spec_path: Path
    profile: str | None
    storage: str
    tracking_uri: str
    device: str
    heartbeat: int
    log_dir: Path


def cpu_count() -> int:
    """CPU cores this process may use (the affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def assignments(jobs: int, devices: list[int] | None, device: str) -> list[tuple[dict[str, str], str, int | None]]:
    """(environment, --device, --threads) per worker: a GPU each where there are GPUs, else a CPU share."""
    if devices is None and device in ("auto", "cuda"):
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else None
    if devices:
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        bad = [d for d in devices if not 0 <= d < have]
        if bad or device not in ("auto", "cuda"):
            raise UserError(
                f"--devices {','.join(map(str, devices))} asks for CUDA GPUs {bad or devices}, but torch "
                f"sees {have} GPU(s) here and --device is '{device}'. Drop --devices to run on the CPU."
            )
        jobs = max(jobs, 1)
        # Each worker sees only its own GPU: no stray CUDA context on GPU 0 from every process.
        return [({"CUDA_VISIBLE_DEVICES": str(devices[i % len(devices)])}, "cuda", None) for i in range(jobs)]
    threads = max(1, cpu_count() // jobs)
    return [({"OMP_NUM_THREADS": str(threads)}, device, threads) for _ in range(jobs)]


def command(launch: Launch, index: int, device: str, threads: int | None) -> list[str]:
    """The `sweeper worker` command line of worker `index` (the store and storage URLs go in `secrets`)."""
    cmd = [
        sys.executable,
        "-m",
        "sweeper",
        "worker",
        str(launch.spec_path),
        "--device",
        device,
        "--heartbeat",
        str(launch.heartbeat),
        "--index",
        str(index),
    ]
    if launch.profile:
        cmd += ["--profile", launch.profile]
    if threads:
        cmd += ["--threads", str(threads)]
    return cmd


def secrets(launch: Launch) -> dict[str, str]:
    """The URLs a worker reads from its environment: they may hold passwords, and any user can read argv (`ps`)."""
    return {"SWEEPER_STORAGE": launch.storage, "MLFLOW_TRACKING_URI": launch.tracking_uri}


def render(snap: Any, procs: list[subprocess.Popen]) -> Group:
    """Cells done / running / failed / pruned / left, and each busy worker's cell and epoch."""
    alive = sum(p.poll() is None for p in procs)
    head = (
        f"cells: [green]{snap.count('done')} done[/] · {snap.count('running')} running · "
        f"[red]{snap.count('failed')} failed[/] · [yellow]{snap.count('pruned')} pruned[/] · "
        f"{snap.count('left')} left   ({alive}/{len(procs)} workers alive)"
    )
    table = Table("worker", "cell", "epoch", box=None, pad_edge=False)
    for worker, cell, epoch, epochs in sorted(snap.active):
        table.add_row(worker, cell, f"{epoch}/{epochs}")
    return Group(head, table)


def run_local(
    launch: Launch, plan: list[tuple[dict[str, str], str, int | None]], *, poll: Callable[[], Any], console: Console
) -> None:
    """Start one worker per `assignments` entry and show progress until all exit; Ctrl-C stops them cleanly."""
    launch.log_dir.mkdir(parents=True, exist_ok=True)
    logs = [launch.log_dir / f"{launch.spec_path.stem}-worker{i}.log" for i in range(len(plan))]
    procs = []
    for i, (env, device, threads) in enumerate(plan):
        logs[i].unlink(missing_ok=True)  # O_CREAT's mode applies to a new file only
        # owner-only: a worker's traceback may quote its environment's store or storage
        with open(os.open(logs[i], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as log:
            procs.append(  # the child keeps its own handle
                subprocess.Popen(
                    command(launch, i, device, threads),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env, **secrets(launch), "COLUMNS": "160"},
                    start_new_session=True,
                )
            )
    console.print(
        f"{len(procs)} workers started ({', '.join(e.get('CUDA_VISIBLE_DEVICES', 'cpu') for e, _, _ in plan)}); "
        f"logs in {launch.log_dir}"
    )
    try:
        with Live(render(poll(), procs), console=console, refresh_per_second=1, transient=False) as live:
            while any(p.poll() is None for p in procs):
                time.sleep(1.0)
                live.update(render(poll(), procs))
    except KeyboardInterrupt:
        for p in procs:  # they run in their own session: the terminal's Ctrl-C reaches only us
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(timeout=120)
        raise
    for i, p in enumerate(procs):
        if p.returncode:
            tail = "\n".join(logs[i].read_text(errors="replace").splitlines()[-15:])
            console.print(
                f"[red]worker {i} exited with code {p.returncode}[/]; last lines of {logs[i]}:\n{tail}", highlight=False
            )
