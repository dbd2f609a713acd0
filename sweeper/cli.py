"""The `sweeper` command: parse, call one library function, print. Heavy imports inside commands."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from rich.console import Console

from sweeper.errors import UserError
from sweeper.secrets import mask_uri

app = typer.Typer(no_args_is_help=True, add_completion=False, help="CIFAR-10 ablation sweeps tracked in MLflow.")
data_app = typer.Typer(no_args_is_help=True, help="Get CIFAR-10 onto this machine.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="The spec YAML, e.g. experiments/activations.yaml.")]
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p", help="A profile of the spec, e.g. quick.")]
UriOpt = Annotated[
    Optional[str],
    typer.Option("--tracking-uri", help="MLflow URI; default $MLFLOW_TRACKING_URI, else sqlite under mlruns/."),
]
StorageOpt = Annotated[
    Optional[str],
    typer.Option(
        help="Optuna storage shared by the workers, e.g. postgresql://user:pw@host/db (better: $SWEEPER_STORAGE, "
        "which `ps` does not show); default sqlite beside the MLflow store."
    ),
]
HeartbeatOpt = Annotated[
    int, typer.Option(min=1, help="Seconds between worker heartbeats; a cell silent for 3 is handed to another worker.")
]


def user_errors(fn):
    """Print a UserError as one paragraph and exit 2; Ctrl-C exits 130 with a resume hint."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:  # masked again here: a message may quote a library's error with a URL in it
            err_console.print(f"[bold red]error:[/] {mask_uri(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: the current cell is marked KILLED; run the same command again to resume.")
            raise typer.Exit(130) from None

    return wrapper


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (`kill`, a batch scheduler, `docker stop`) as Ctrl-C while training: the cell's run is
    closed KILLED with its checkpoint (resumable) instead of being left RUNNING."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


@app.command()
@user_errors
def validate(specs: Annotated[list[Path], typer.Argument(help="One or more spec files.")]) -> None:
    """Check specs strictly (names, types, ranges) and list their cells with parameter counts; writes nothing."""
    from sweeper.schema.checks import differences
    from sweeper.schema.config import TrainConfig, merge, unflatten
    from sweeper.schema.spec import expand, load_spec

    loaded = [(path, load_spec(path)) for path in specs]  # every spec checked before any output
    from sweeper.training.cost import model_cost  # torch: only once the specs are known good

    for path, spec in loaded:
        cells = expand(spec)
        if spec.search is not None:
            s = spec.search
            console.print(
                f"[green]ok[/] {path}: {spec.name}, {s.sampler} search over {', '.join(s.params)}: "
                f"{s.budget() or 'unbounded'} trials{f', {s.timeout:g} s per worker' if s.timeout else ''}, "
                f"pruner {s.pruner.name}, {s.objective.direction} {s.objective.metric}; "
                f"profiles: {', '.join(spec.profiles) or 'none'}",
                soft_wrap=True,
                highlight=False,
            )
            continue
        console.print(
            f"[green]ok[/] {path}: {spec.name}, {len(cells)} cells "
            f"({len(cells) // len(spec.seeds)} rows x {len(spec.seeds)} seeds), "
            f"profiles: {', '.join(spec.profiles) or 'none'}",
            soft_wrap=True,
        )
        base = TrainConfig.model_validate(merge(unflatten(spec.base), {"seed": spec.seeds[0]}))
        console.print(
            f"  base: {base.model.name}, {base.activation}, {base.optimizer.name} lr={base.optimizer.lr:g}, "
            f"{base.epochs} epochs",
            highlight=False,
            soft_wrap=True,
        )
        for label, _ in spec.row_overrides():
            cell = next(c for c in cells if c.label == label)
            changed = ", ".join(f"{k}={v}" for k, v in differences(base, cell.config).items()) or "as base"
            console.print(
                f"  {label}: {changed}, {model_cost(cell.config).params:,} params", highlight=False, soft_wrap=True
            )


@app.command()
def schema() -> None:
    """Every spec key with its type, default, allowed values and meaning (from the models `validate` uses)."""
    from sweeper.schema.doc import schema_text

    console.print(schema_text(), highlight=False, soft_wrap=True, markup=False, end="")


@app.command()
@user_errors
def run(
    spec: SpecArg,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    device: Annotated[str, typer.Option(help="auto (cuda, mps, cpu), cpu, cuda, cuda:N.")] = "auto",
    jobs: Annotated[
        Optional[int],
        typer.Option(
            "--jobs", "-j", min=1, help="Worker processes on this machine; default 1, or one per --devices entry."
        ),
    ] = None,
    devices: Annotated[
        Optional[str],
        typer.Option(
            help="GPUs for the workers, e.g. 0,1,2,3 (numbered as this process sees them, within "
            "CUDA_VISIBLE_DEVICES) or all: one worker per GPU."
        ),
    ] = None,
    storage: StorageOpt = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Train cells that failed with an error again.")
    ] = False,
    heartbeat: HeartbeatOpt = 10,
    launcher: Annotated[
        str, typer.Option(help="local (here), or slurm: submit --workers workers as one SLURM job array and return.")
    ] = "local",
    workers: Annotated[Optional[int], typer.Option(min=1, help="SLURM: array tasks, one worker each.")] = None,
    gpus_per_worker: Annotated[Optional[int], typer.Option(min=0, help="SLURM: GPUs per worker.")] = None,
    cpus_per_worker: Annotated[Optional[int], typer.Option(min=1, help="SLURM: CPUs per worker.")] = None,
    partition: Annotated[Optional[str], typer.Option(help="SLURM: the partition.")] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time", help="SLURM: time per task, e.g. 4:00:00.")] = None,
    slurm_opt: Annotated[
        Optional[list[str]], typer.Option(help="SLURM: any other sbatch option as key=value; repeat.")
    ] = None,
    requeue: Annotated[
        bool, typer.Option("--requeue", help="SLURM: a preempted or timed-out task is requeued and resumes its cell.")
    ] = False,
) -> None:
    """Train every unfinished cell of a spec and log it to MLflow; finished cells are skipped."""
    from sweeper import sweep

    if launcher != "local":
        from sweeper.sweep import slurm

        if launcher != "slurm":
            raise UserError(f"--launcher '{launcher}' is not one of: local, slurm.")
        opts = slurm.options(
            spec,
            profile,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker,
            partition=partition,
            time=time_limit,
            extra=slurm_opt or [],
            requeue=requeue,
        )
        ids, logs = slurm.submit(
            spec, profile, opts, storage=storage, tracking_uri=tracking_uri, device=device, heartbeat=heartbeat
        )
        console.print(
            f"submitted {len(ids)} SLURM workers: {' '.join(ids)}\n  logs: {logs}   (`sweeper logs {spec}`)\n"
            f"  progress: sweeper status {spec}" + (f" -p {profile}" if profile else ""),
            highlight=False,
            soft_wrap=True,
        )
        return
    gpus = _device_list(devices)
    with sigterm_as_interrupt():
        report = sweep.run(
            spec,
            profile,
            tracking_uri=tracking_uri,
            device=device,
            console=console,
            jobs=jobs,
            devices=gpus,
            storage=storage,
            retry_failed=retry_failed,
            heartbeat=heartbeat,
        )
    if report.failed:
        err_console.print(
            f"[red]{len(report.failed)} cell(s) failed:[/] {', '.join(report.failed)} "
            "(errors are tagged on their MLflow runs; `--retry-failed` trains them again)."
        )
        raise typer.Exit(1)


@app.command()
@user_errors
def table(
    name: Annotated[str, typer.Argument(help="A sweep name (the spec's `name`) or a spec path.")],
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown, csv, latex or html.")] = "markdown",
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of printing.")] = None,
    check: Annotated[
        Optional[Path], typer.Option(help="Exit 1, with a diff, if this markdown file's table differs from the runs.")
    ] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Also count runs of older versions of the spec's rows.")
    ] = False,
    reported: Annotated[
        str, typer.Option(help="The report's values beside ours: inline, column, or off (no verdict either).")
    ] = "inline",
    check_reported: Annotated[
        bool, typer.Option("--check-reported", help="Exit 1 if a finished row is out of tolerance of its report.")
    ] = False,
) -> None:
    """Rebuild the spec's table from the tracked runs alone (and log it to the sweep's run as table.md)."""
    from sweeper import tables

    built = tables.build(name, profile, tracking_uri, all_versions=all_versions, reported=reported)
    _log_table(built, tracking_uri)
    if check:
        same, diff = tables.check(built, check)
        sys.stdout.write(diff if not same else f"{check}: the table of '{built.name}' matches the runs.\n")
        raise typer.Exit(0 if same else 1)
    text = tables.render(built, fmt)
    if check_reported:
        outside = tables.out_of_tolerance(built)
        sys.stdout.write(text)
        if outside:
            sys.stderr.write("Out of tolerance of the report: " + "; ".join(outside) + "\n")
        raise typer.Exit(1 if outside else 0)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def _log_table(built: Any, tracking_uri: str | None) -> None:
    """The table as markdown on the sweep's parent run (table.md), so the MLflow UI shows it beside the runs.

    Only when it differs from the one logged, and into a local artifact folder directly: `sweeper table` on
    a local store never imports MLflow (~3 s); a remote store's table goes through MLflow.
    """
    from sweeper import tables
    from sweeper.runs import db as runs_db

    markdown = tables.render(built, "markdown")
    if built.parent_run is None or markdown == built.logged:
        return
    try:
        if runs_db.write_text_artifact(built.parent_artifacts, tables.TABLE_MD, markdown):
            return  # a local artifact folder: no MLflow import
        from sweeper.runs import tracking

        tracking.log_text(tracking.open_store(tracking_uri), built.parent_run, markdown, tables.TABLE_MD)
    except Exception as exc:  # noqa: BLE001 - a read-only store still gets its table printed
        print(f"warning: table.md not logged to run {built.parent_run}: {type(exc).__name__}: {exc}", file=sys.stderr)


@data_app.command("prepare")
@user_errors
def data_prepare(
    source: Annotated[
        Optional[Path], typer.Option("--from", help="cifar-10-batches-py folder, ImageFolder tree or its .tar.gz.")
    ] = None,
    download: Annotated[bool, typer.Option(help="Download CIFAR-10 with torchvision (needs the internet).")] = False,
    data_dir: Annotated[
        Optional[Path], typer.Option(help="Where the cache goes; default $SWEEPER_DATA_DIR or ./data.")
    ] = None,
) -> None:
    """Decode CIFAR-10 once into a cached uint8 array that every run loads in about a second."""
    from sweeper.settings import get_settings
    from sweeper.training.data import prepare

    if source is None and not download:
        raise UserError(
            "say where CIFAR-10 comes from: `sweeper data prepare --from PATH` "
            "(a cifar-10-batches-py folder, an ImageFolder tree or its .tar.gz) or `--download`."
        )
    path = prepare(data_dir or get_settings().data_dir, source, download=download)
    console.print(f"CIFAR-10 cached at {path}")


@app.command()
@user_errors
def plot(
    name: Annotated[str, typer.Argument(help="A sweep name (the spec's `name`) or a spec path.")],
    metric: Annotated[
        str, typer.Option(help="The per-epoch metric to overlay, e.g. val_acc, val_loss, train_loss.")
    ] = "val_acc",
    bar_metric: Annotated[
        Optional[str], typer.Option(help="The table metric of the bar chart; default its first.")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="The HTML file; default results/NAME-PROFILE-METRIC.html.")
    ] = None,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    png: Annotated[bool, typer.Option(help="Also write a PNG beside the HTML (needs Chromium).")] = True,
) -> None:
    """Overlay every row's per-epoch curve (mean over seeds, min-max band) beside a bar chart of the table metric."""
    from sweeper.tables import compare

    files = compare.plot(name, metric, out, profile, tracking_uri, bar_metric, png)
    console.print(
        "wrote " + ", ".join(str(f) for f in files) + " (also logged to the sweep's MLflow run)", soft_wrap=True
    )


@app.command()
@user_errors
def report(
    out: Annotated[Path, typer.Option(help="Folder for report.md and its figures.")] = Path("results"),
    metric: Annotated[str, typer.Option(help="The per-epoch metric of each sweep's figure.")] = "val_acc",
    figures: Annotated[bool, typer.Option(help="Draw each sweep's comparison figure.")] = True,
    png: Annotated[bool, typer.Option(help="Also write each figure as PNG (needs Chromium).")] = True,
    tracking_uri: UriOpt = None,
) -> None:
    """Write one markdown report with the table of every sweep in the store and links to its figures."""
    from sweeper.tables import compare

    console.print(f"wrote {compare.report(out, tracking_uri, metric, figures, png)}")


analyze_app = typer.Typer(
    no_args_is_help=True, help="BatchNorm probes, loss landscapes, filters: figures logged to MLflow."
)
app.add_typer(analyze_app, name="analyze")
NameArg = Annotated[str, typer.Argument(help="A sweep name (the spec's `name`) or a spec path.")]
RowOpt = Annotated[str, typer.Option("--row", "-r", help="The row label, e.g. 'VGG-A(BN) lr=1e-3'.")]
OutOpt = Annotated[Optional[Path], typer.Option(help="Also keep the figures in this folder.")]


def _logged(paths: list[str], where: str) -> None:
    console.print(f"logged to {where}: " + ", ".join(paths), soft_wrap=True, highlight=False)


@analyze_app.command("bn")
@user_errors
def analyze_bn(
    name: NameArg,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    group: Annotated[str, typer.Option(help="The param whose values are the compared models.")] = "model.batch_norm",
    smooth: Annotated[int, typer.Option(min=1, help="Moving average of the per-step loss over this many steps.")] = 1,
    out: OutOpt = None,
) -> None:
    """Loss band across learning rates and the Santurkar probe figures, logged to the sweep's parent run."""
    from sweeper.analysis.study import bn_study

    _logged(bn_study(name, profile, tracking_uri, group=group, window=smooth, out=out), "the sweep's parent run")


@analyze_app.command("landscape")
@user_errors
def analyze_landscape(
    name: NameArg,
    row: RowOpt,
    checkpoint: Annotated[
        list[str], typer.Option(help="best, last, init, an artifact path of the run or a local .pt; repeat to compare.")
    ] = ["best"],  # noqa: B006
    grid: Annotated[int, typer.Option(min=2, help="Points per axis.")] = 21,
    subset: Annotated[int, typer.Option(min=1, help="Training images the loss is averaged over.")] = 1000,
    span: Annotated[float, typer.Option(help="The grid covers [-span, span] along each direction.")] = 1.0,
    batch: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the directions and of the image subset.")] = 0,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    device: Annotated[str, typer.Option(help="auto (cuda, mps, cpu), cpu, cuda, cuda:N.")] = "auto",
    out: OutOpt = None,
) -> None:
    """2D loss surface (Li et al. 2018, filter-normalised directions) of one row's run at checkpoints."""
    from sweeper.analysis.trained import landscape_study

    paths = landscape_study(
        name,
        row,
        checkpoint,
        grid=grid,
        subset=subset,
        span=span,
        batch=batch,
        seed=seed,
        profile=profile,
        tracking_uri=tracking_uri,
        device=device,
        console=console,
        out=out,
    )
    _logged(paths, f"the run of '{row}'")


@analyze_app.command("filters")
@user_errors
def analyze_filters(
    name: NameArg,
    row: RowOpt,
    checkpoint: Annotated[
        str, typer.Option(help="best, last, init, an artifact path of the run or a local .pt.")
    ] = "last",
    image: Annotated[int, typer.Option(help="Index of the test image whose feature maps are drawn.")] = 0,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    out: OutOpt = None,
) -> None:
    """First-layer kernels (RGB and grayscale) and one test image's feature maps after the first conv."""
    from sweeper.analysis.trained import filters_study

    paths = filters_study(name, row, checkpoint, image=image, profile=profile, tracking_uri=tracking_uri, out=out)
    _logged(paths, f"the run of '{row}'")


def _device_list(devices: str | None) -> list[int] | Literal["all"] | None:
    if not devices:
        return None
    if devices.strip() == "all":
        return "all"
    try:
        return [int(d) for d in devices.split(",") if d.strip()]
    except ValueError:
        raise UserError(f"--devices '{devices}' is not a list of GPU numbers like 0,1,2,3, or all.") from None


@app.command()
@user_errors
def worker(
    spec: SpecArg,
    profile: ProfileOpt = None,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    device: Annotated[str, typer.Option(help="auto (cuda, mps, cpu), cpu, cuda, cuda:N.")] = "auto",
    threads: Annotated[
        Optional[int], typer.Option(min=1, help="CPU threads for training (torch.set_num_threads).")
    ] = None,
    heartbeat: HeartbeatOpt = 10,
    index: Annotated[Optional[int], typer.Option(hidden=True, help="Worker number (set by `run --jobs`).")] = None,
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
    console.print(
        f"worker done: {len(report.finished)} finished, {len(report.pruned)} pruned, {len(report.failed)} failed"
    )


@app.command()
@user_errors
def status(spec: SpecArg, profile: ProfileOpt = None, storage: StorageOpt = None, tracking_uri: UriOpt = None) -> None:
    """Print how many cells of a sweep are done, running, failed, pruned and left, and what runs now."""
    from sweeper import sweep

    snap = sweep.status(spec, profile, storage=storage, tracking_uri=tracking_uri)
    left = snap.count("left") if snap.extra_left is not None else f"{snap.count('left')}+ (time budget)"
    console.print(
        f"done {snap.count('done')}, running {snap.count('running')}, failed {snap.count('failed')}, "
        f"pruned {snap.count('pruned')}, left {left}",
        highlight=False,
    )
    for worker_name, cell, epoch, epochs in snap.active:
        console.print(f"  running: {cell} on {worker_name}, epoch {epoch}/{epochs}", highlight=False, soft_wrap=True)
    for cid, state in snap.states.items():
        if state == "failed":
            console.print(f"  failed: {snap.names[cid]}", highlight=False, soft_wrap=True)
    from sweeper.schema.spec import load_spec
    from sweeper.sweep import slurm

    for task, state, where in slurm.array_states(load_spec(spec).name, tracking_uri):
        console.print(f"  slurm {task}: {state} ({where})", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def logs(
    spec: SpecArg,
    task: Annotated[Optional[str], typer.Option(help="One array task, e.g. 1234_0 or just 0.")] = None,
    lines: Annotated[int, typer.Option(min=1, help="Last lines of each log.")] = 40,
    tracking_uri: UriOpt = None,
) -> None:
    """Print the last lines of each SLURM array task's log (stdout and stderr) of a spec's sweep."""
    from sweeper.schema.spec import load_spec
    from sweeper.sweep import slurm

    files = slurm.logs(load_spec(spec).name, tracking_uri, task)
    if not files:
        raise UserError(f"no SLURM logs for {spec} in {slurm.log_dir(load_spec(spec).name, tracking_uri)}.")
    for path in files:
        text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        console.print(f"==> {path} <==\n{text}", highlight=False, markup=False, soft_wrap=True)


@app.command()
@user_errors
def server(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 5000,
    host: Annotated[
        str, typer.Option(help="Interface to bind; anything but loopback needs --allow-remote.")
    ] = "127.0.0.1",
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow a non-loopback --host (no authentication!).")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Server worker processes.")] = 2,
) -> None:
    """Serve the local store (mlruns/) with a real `mlflow server`: UI, REST API and artifacts, until Ctrl-C."""
    from sweeper.runs import server as mlflow_server
    from sweeper.settings import get_settings

    store = get_settings().store_dir
    running = mlflow_server.start(store, host, port, workers=workers, allow_remote=allow_remote)
    if not mlflow_server.is_loopback(host):
        err_console.print(
            f"[yellow]warning:[/] listening on {host}:{port} without authentication: anyone who can "
            "reach it can read and change every run. See README (basic-auth) for shared servers."
        )
    console.print(
        f"MLflow server for {store.resolve()} at {running.url}\n"
        f"  export MLFLOW_TRACKING_URI={running.url}   # then `sweeper run ...` logs there",
        highlight=False,
        soft_wrap=True,
    )
    try:
        code = running.wait()
    except KeyboardInterrupt:  # the server runs in its own process group: stopping it is ours to do
        code = 0
    finally:
        running.stop()
    if code:
        raise UserError(f"mlflow server exited with code {code}.")


@app.command()
@user_errors
def doctor() -> None:
    """What this machine offers a run: torch and its CUDA build, the driver, each GPU, what `precision: auto` picks."""
    from sweeper.training.doctor import advice, describe, gather

    facts = gather()
    for line in describe(facts):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    for line in advice(facts):
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


@app.command("list")
@user_errors
def list_specs(
    directory: Annotated[Path, typer.Argument(help="A folder of spec files.")] = Path("experiments"),
    gpu_tflops: Annotated[
        Optional[float], typer.Option(help="Assumed sustained GPU rate in TFLOP/s (default 25).")
    ] = None,
    cpu_gflops: Annotated[
        Optional[float], typer.Option(help="Assumed CPU rate here in GFLOP/s (default: measured for this CPU kind).")
    ] = None,
) -> None:
    """Every spec in a folder: rows, seeds, epochs, networks with parameter counts, estimated cost per profile."""
    from sweeper.training.cost import describe, survey

    invalid = 0
    for _path, summary in survey(directory):
        if isinstance(summary, UserError):
            invalid += 1
            err_console.print(f"[bold red]invalid:[/] {summary}", highlight=False, soft_wrap=True)
            continue
        for line in describe(summary, gpu_tflops, cpu_gflops):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(
        "Cost: forward+backward FLOPs of every training image and evaluation at the rates shown, plus the "
        "batched augmentation on CPUs (on a GPU it runs beside the network); estimates to plan with.",
        highlight=False,
        soft_wrap=True,
    )
    if invalid:
        raise typer.Exit(2)


def main() -> None:
    """Entry point for `python -m sweeper`."""
    app()
