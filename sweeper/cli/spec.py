"""Commands about spec files: `validate`, `schema`, `list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sweeper.cli.common import command, console, err_console, say
from sweeper.errors import UserError


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    command(app)(validate)
    command(app)(schema)
    command(app, "list")(list_specs)


def validate(specs: Annotated[list[Path], typer.Argument(help="One or more spec files.")]) -> None:
    """Check specs strictly (names, types, ranges, the code they name) and list their cells with parameter counts; writes nothing."""
    from sweeper.schema.spec import load_spec

    loaded = [(path, load_spec(path)) for path in specs]  # every spec checked before any output
    from sweeper.training.report import validation_lines  # torch: only once the specs are known good

    for path, spec in loaded:
        lines = validation_lines(path, spec)
        console.print(f"[green]ok[/]{lines[0][2:]}", soft_wrap=True, highlight=False)
        for line in lines[1:]:
            say(line)


def schema() -> None:
    """Every spec key with its type, default, allowed values and meaning, and every named choice (the models `validate` uses)."""
    from sweeper.schema.doc import schema_text

    console.print(schema_text(), highlight=False, soft_wrap=True, markup=False, end="")


def list_specs(
    directory: Annotated[Path, typer.Argument(help="A folder of spec files.")] = Path("experiments"),
    gpu_tflops: Annotated[
        Optional[float],
        typer.Option(
            help="A measured sustained GPU rate in TFLOP/s (default: T4, V100, L4, A100 and H100 at assumed rates)."
        ),
    ] = None,
    cpu_gflops: Annotated[
        Optional[float], typer.Option(help="Assumed CPU rate here in GFLOP/s (default: measured for this CPU kind).")
    ] = None,
) -> None:
    """Every spec in a folder: rows, seeds, epochs, networks with parameter counts, estimated cost per profile."""
    from sweeper.training.report import describe, survey

    invalid = 0
    for _path, summary in survey(directory):
        if isinstance(summary, UserError):
            invalid += 1
            err_console.print(f"[bold red]invalid:[/] {summary}", highlight=False, soft_wrap=True)
            continue
        for line in describe(summary, gpu_tflops, cpu_gflops):
            say(line)
    say(
        "Cost: forward+backward FLOPs of every training image and evaluation at the rates shown, plus the "
        "batched augmentation on CPUs (on a GPU it runs beside the network); estimates to plan with."
    )
    if invalid:
        raise typer.Exit(2)
