"""What every command shares: the consoles, the options spelt once, and the one user-error handler that
`command` puts around every command (a user's mistake: one paragraph, exit 2; Ctrl-C: exit 130)."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from sweeper.errors import UserError
from sweeper.secrets import mask_uri

console = Console()
err_console = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="The spec YAML, e.g. experiments/activations.yaml.")]
NameArg = Annotated[str, typer.Argument(help="A sweep name (the spec's `name`) or a spec path.")]
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
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps.")]
LauncherOpt = Annotated[
    Optional[str],
    typer.Option(
        help="Where the workers run: local or slurm (or your own file.py:Class); default the spec's launcher."
    ),
]
OutOpt = Annotated[Optional[Path], typer.Option(help="Also keep the figures in this folder.")]

F = TypeVar("F", bound=Callable[..., Any])


def command(app: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register a command behind the user-error handler: every command, so none prints a traceback for a user's mistake."""

    def register(fn: F) -> F:
        app.command(name)(user_errors(fn))
        return fn

    return register


def user_errors(fn: F) -> F:
    """Print a UserError as one paragraph and exit 2; Ctrl-C exits 130 with a resume hint."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:  # masked again here: a message may quote a library's error with a URL in it
            # escaped: a message quoting "sweeper[ui]" or a path with brackets is text, not rich markup
            err_console.print(f"[bold red]error:[/] {escape(mask_uri(str(exc)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: the current cell is marked KILLED; run the same command again to resume.")
            raise typer.Exit(130) from None
        except Exception as exc:
            # A full disk or read-only store met in MLflow's, Optuna's or SQLAlchemy's code: one paragraph too.
            from sweeper.runs.faults import diagnose
            from sweeper.settings import get_settings

            fault = diagnose(exc, get_settings().store_dir)
            if fault is None:
                raise
            err_console.print(f"[bold red]error:[/] {mask_uri(str(fault))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


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


def say(text: str) -> None:
    """Print plain text: no markup, no highlighting, long lines kept whole."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)
