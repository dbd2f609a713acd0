"""The `sweeper` command: each group of commands in its own module, wired here; a command parses, calls
one library function and prints. Heavy imports stay inside the commands (`sweeper --help` is instant)."""

from __future__ import annotations

import typer

from sweeper.cli import analyze, machine, spec, sweep, tables

app = typer.Typer(no_args_is_help=True, add_completion=False, help="CIFAR-10 ablation sweeps tracked in MLflow.")
for group in (spec, sweep, tables, analyze, machine):
    group.register(app)


def main() -> None:
    """Entry point for `python -m sweeper`."""
    app()
