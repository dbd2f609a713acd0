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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from sweeper.errors import UserError, warn
from sweeper.sweep.launchers import worker_environment
from sweeper.training.device import usable_cores


@dataclass
class Launch:
    """What every worker of one sweep is started with."""

    spec_path: Path
    spec_name: str  # the spec's `name:`, which its worker logs are named after (`sweeper logs` finds them by it)
    profile: str | None
    storage: str
    tracking_uri: str
    device: str
    heartbeat: int
    log_dir: Path


def cpu_count() -> int:
    """CPU cores this process may use (the affinity mask, where the OS has one)."""
    return usable_cores()


def visible_gpus(environ: Mapping[str, str]) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as its entries (indices, GPU-/MIG- UUIDs), or None when unset (every GPU).

    CUDA reads the list up to the first invalid entry (say -1), so that is where it ends here too.
    """
    mask = environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return None
    entries = []
    for entry in (e.strip() for e in mask.split(",")):
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return entries


def gpu_masks(devices: list[int], parent: list[str] | None) -> list[str]:
    """Each worker's CUDA_VISIBLE_DEVICES: GPU i as this process sees it, mapped through its own mask.

    Under CUDA_VISIBLE_DEVICES=2,3, `--devices 0,1` means physical GPUs 2 and 3; writing "0" and "1"
    into the workers' masks would put them on GPUs 0 and 1, someone else's. UUID and MIG entries
    are passed on as they are.
    """
    if parent is None:
        return [str(d) for d in devices]
    return [parent[d] for d in devices]


GpuList = list[int] | Literal["all"] | None
MPS_PIPE = "/tmp/nvidia-mps"  # nvidia-cuda-mps-control's default pipe directory


def mps_running(environ: Mapping[str, str]) -> bool:
    """Whether an MPS control daemon is reachable (its pipe directory, CUDA_MPS_PIPE_DIRECTORY or the default)."""
    return (Path(environ.get("CUDA_MPS_PIPE_DIRECTORY", MPS_PIPE)) / "control").exists()


def packing_note(devices: list[int], environ: Mapping[str, str]) -> str | None:
    """A note when `--devices` names a GPU more than once (several workers on it) and no MPS daemon runs:
    without MPS the GPU time-slices between processes and packing gains about nothing."""
    packed = sorted({d for d in devices if devices.count(d) > 1})
    if not packed or mps_running(environ):
        return None
    return (
        f"--devices puts {max(devices.count(d) for d in packed)} workers on GPU {','.join(map(str, packed))}, but no "
        "MPS daemon runs: they will take turns on the GPU rather than share it. Start one with "
        "`nvidia-cuda-mps-control -d` (see the README's 'Several cells per GPU')."
    )


def assignments(
    jobs: int | None,
    devices: GpuList,
    device: str,
    *,
    gpu_count: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[tuple[dict[str, str], str, int | None]]:
    """(environment, --device, --threads) per worker: a GPU each where there are GPUs, else a CPU share.

    `jobs` None means one worker per GPU (or one on the CPU); `gpu_count` and `environ` default to
    what torch and this process see (tests pass their own).
    """
    environ = os.environ if environ is None else environ
    if gpu_count is None:
        gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if devices is None and device in ("auto", "cuda") and gpu_count:
        devices = "all"
    if devices == "all":
        devices = list(range(gpu_count))
        if not devices:
            raise UserError(
                "--devices all asks for every GPU, but torch sees none here; drop --devices to use the CPU."
            )
    if devices:
        bad = [d for d in devices if not 0 <= d < gpu_count]
        if bad or device not in ("auto", "cuda"):
            raise UserError(
                f"--devices {','.join(map(str, devices))} asks for CUDA GPUs {bad or devices}, but torch "
                f"sees {gpu_count} GPU(s) here and --device is '{device}'. Drop --devices to run on the CPU."
            )
        masks = gpu_masks(devices, visible_gpus(environ))
        note = packing_note(devices, environ)
        if note:
            warn(note)
        # nvidia-smi numbers GPUs by PCI bus; CUDA's default order (fastest first) may not.
        order = environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        jobs = jobs or len(devices)
        # Each worker sees only its own GPU: no stray CUDA context on GPU 0 from every process.
        return [
            ({"CUDA_VISIBLE_DEVICES": masks[i % len(masks)], "CUDA_DEVICE_ORDER": order}, "cuda", None)
            for i in range(jobs)
        ]
    jobs = jobs or 1
    threads = max(1, cpu_count() // jobs)
    return [({"OMP_NUM_THREADS": str(threads)}, device, threads) for _ in range(jobs)]


def command(launch: Launch, index: int, device: str, threads: int | None) -> list[str]:
    """The `sweeper worker` command line of worker `index` (the store and storage URLs go in its environment)."""
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
    logs = [launch.log_dir / f"{launch.spec_name}-worker{i}.log" for i in range(len(plan))]
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
                    env={
                        **os.environ,
                        **env,
                        **worker_environment(launch.storage, launch.tracking_uri),
                        "COLUMNS": "160",
                    },
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
