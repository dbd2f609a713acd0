"""The `sweeper` command: each group of commands in its own module, wired here; a command parses, calls
one library function and prints. Heavy imports stay inside the commands (`sweeper --help` is instant)."""

from __future__ import annotations

import os

import typer

from sweeper.cli import analyze, machine, spec, sweep, tables

# One GPU numbering for this process and its workers, set before anything starts CUDA: PCI bus order,
# as nvidia-smi, NVML and MLflow's gpu_<i> use (training.device.pci_bus_order; torch is not imported here).
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

app = typer.Typer(no_args_is_help=True, add_completion=False, help="CIFAR-10 ablation sweeps tracked in MLflow.")
for group in (spec, sweep, tables, analyze, machine):
    group.register(app)


def main() -> None:
    """Entry point for `python -m sweeper`."""
    app()
