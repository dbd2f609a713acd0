"""Commands about this machine and its services: `data prepare`, `server`, `doctor`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sweeper.cli.common import command, console, err_console, say
from sweeper.errors import UserError


def register(app: typer.Typer) -> None:
    """Add this group's commands (and the `data` group) to the root app."""
    data = typer.Typer(no_args_is_help=True, help="Get CIFAR-10 onto this machine.")
    command(data, "prepare")(data_prepare)
    app.add_typer(data, name="data")
    command(app)(server)
    command(app)(doctor)


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
        f"  export MLFLOW_TRACKING_URI={running.url}   # then `sweeper run ...` logs there\n"
        f"  runs: {mlflow_server.ui_url(running.url)}",
        highlight=False,
        soft_wrap=True,
    )
    for link in _sweep_links(store, running.url):
        say(f"  {link}")
    try:
        code = running.wait()
    except KeyboardInterrupt:  # the server runs in its own process group: stopping it is ours to do
        code = 0
    finally:
        running.stop()
    if code:
        raise UserError(f"mlflow server exited with code {code}.")


def _sweep_links(store: Path, url: str) -> list[str]:
    """Each experiment of the served store as a link into the UI's model-training view."""
    from sweeper.tables.summary import ui_links

    try:
        return ui_links(f"sqlite:///{(store / 'mlflow.db').resolve()}", base=url)
    except Exception:  # noqa: BLE001 - a store MLflow has just created may not be readable yet: links are a courtesy
        return []


def doctor() -> None:
    """What this machine offers a run: torch and its CUDA build, the driver, each GPU, what `precision: auto` picks."""
    from sweeper.training.doctor import advice, describe, gather

    facts = gather()
    for line in describe(facts):
        say(line)
    for line in advice(facts):
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
