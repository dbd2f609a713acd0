"""The `sweeper` command: parse, call one library function, print. Heavy imports inside commands."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from sweeper.errors import UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="CIFAR-10 ablation sweeps tracked in MLflow.")
data_app = typer.Typer(no_args_is_help=True, help="Get CIFAR-10 onto this machine.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="The spec YAML, e.g. experiments/activations.yaml.")]
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p", help="A profile of the spec, e.g. quick.")]
UriOpt = Annotated[Optional[str], typer.Option("--tracking-uri", help="MLflow URI; default $MLFLOW_TRACKING_URI, else sqlite under mlruns/.")]


def user_errors(fn):
    """Print a UserError as one paragraph and exit 2; Ctrl-C exits 130 with a resume hint."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: the current cell is marked KILLED; run the same command again to resume.")
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@user_errors
def validate(specs: Annotated[list[Path], typer.Argument(help="One or more spec files.")]) -> None:
    """Check specs strictly (names, types, ranges) and list their cells; writes nothing."""
    from sweeper.spec import expand, load_spec

    for path in specs:
        spec = load_spec(path)
        cells = expand(spec)
        console.print(f"[green]ok[/] {path}: {spec.name}, {len(cells)} cells "
                      f"({len(cells) // len(spec.seeds)} rows x {len(spec.seeds)} seeds), "
                      f"profiles: {', '.join(spec.profiles) or 'none'}", soft_wrap=True)
        for label, _ in spec.row_overrides():
            cell = next(c for c in cells if c.label == label)
            console.print(f"  {label}: {cell.config.model.name}, {cell.config.activation}, "
                          f"{cell.config.optimizer.name} lr={cell.config.optimizer.lr:g}, {cell.config.epochs} epochs",
                          highlight=False, soft_wrap=True)


@app.command()
@user_errors
def run(
    spec: SpecArg,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    device: Annotated[str, typer.Option(help="auto (cuda, mps, cpu), cpu, cuda, cuda:N.")] = "auto",
) -> None:
    """Train every unfinished cell of a spec and log it to MLflow; finished cells are skipped."""
    from sweeper import sweep

    report = sweep.run(spec, profile, tracking_uri=tracking_uri, device=device, console=console)
    if report.failed:
        err_console.print(f"[red]{len(report.failed)} cell(s) failed:[/] {', '.join(report.failed)} "
                          "(errors are tagged on their MLflow runs; run again to retry them).")
        raise typer.Exit(1)


@app.command()
@user_errors
def table(
    name: Annotated[str, typer.Argument(help="A sweep name (the spec's `name`) or a spec path.")],
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown or csv.")] = "markdown",
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of printing.")] = None,
) -> None:
    """Rebuild the spec's table from the tracked runs alone."""
    from sweeper import tables

    text = tables.render(tables.build(name, profile, tracking_uri), fmt)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)


@data_app.command("prepare")
@user_errors
def data_prepare(
    source: Annotated[Optional[Path], typer.Option("--from", help="cifar-10-batches-py folder, ImageFolder tree or its .tar.gz.")] = None,
    download: Annotated[bool, typer.Option(help="Download CIFAR-10 with torchvision (needs the internet).")] = False,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where the cache goes; default $SWEEPER_DATA_DIR or ./data.")] = None,
) -> None:
    """Decode CIFAR-10 once into a cached uint8 array that every run loads in about a second."""
    from sweeper.data import prepare
    from sweeper.settings import get_settings

    if source is None and not download:
        raise UserError("say where CIFAR-10 comes from: `sweeper data prepare --from PATH` "
                        "(a cifar-10-batches-py folder, an ImageFolder tree or its .tar.gz) or `--download`.")
    path = prepare(data_dir or get_settings().data_dir, source, download=download)
    console.print(f"CIFAR-10 cached at {path}")


def main() -> None:
    """Entry point for `python -m sweeper`."""
    app()
