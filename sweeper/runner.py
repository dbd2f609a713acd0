"""Train one cell inside its MLflow child run: the seam between the loop and the tracking store."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.progress import Progress

from sweeper import tracking
from sweeper.data import CifarData
from sweeper.spec import Cell, Spec
from sweeper.train import OnStep, pick_precision, train


@dataclass
class CellOutcome:
    """How one cell ended: its display name, whether it finished, and its summary metrics."""

    name: str
    ok: bool
    pruned: bool = False
    summary: dict[str, float] | None = None
    error: str | None = None


def run_cell(
    cell: Cell,
    spec: Spec,
    profile: str | None,
    store: tracking.Store,
    exp_id: str,
    parent: str,
    data: CifarData,
    device: torch.device,
    progress: Progress,
    *,
    on_epoch_hook: Callable[[dict[str, float]], None] | None = None,
    on_step: OnStep | None = None,
) -> CellOutcome:
    """Train one cell, logging every epoch; a failure is recorded on the run and returned, not raised.

    `on_epoch_hook` sees each epoch's metrics after they are logged (the sweeper's pruner raises
    `Pruned` from it); `on_step` is passed to the training loop (analysis probes).
    """
    name = f"{cell.label} seed={cell.seed}"
    task = progress.add_task(f"  {name}", total=cell.config.epochs)
    tick = time.perf_counter()
    try:
        with tracking.cell_run(store, exp_id, parent, cell, spec, profile) as log:
            log.set_tags({"sweeper.device": str(device), "sweeper.precision": pick_precision(cell.config.precision, device)})

            def on_epoch(metrics: dict[str, float], checkpoint) -> None:
                log.log_epoch(metrics)
                progress.update(task, completed=metrics["epoch"], description=f"  {name} val_acc {metrics['val_acc']:.3f}")
                if on_epoch_hook is not None:
                    on_epoch_hook(metrics)

            result = train(cell.config, data, device=device, on_epoch=on_epoch, on_step=on_step)
            log.log_summary({**result.summary, "train_time": time.perf_counter() - tick})
    except Exception as exc:  # noqa: BLE001 - the run is marked FAILED with the error; the sweep goes on
        progress.remove_task(task)
        progress.console.print(f"[red]{name} failed: {type(exc).__name__}: {exc}[/]")
        return CellOutcome(name, ok=False, error=f"{type(exc).__name__}: {exc}")
    progress.remove_task(task)
    s = result.summary
    progress.console.print(
        f"{name}: test_acc {100 * s['test_acc']:.2f}% (best val {100 * s['best_val_acc']:.2f}% "
        f"@ epoch {s['best_epoch']}, {time.perf_counter() - tick:.0f} s)"
    )
    return CellOutcome(name, ok=True, summary=s)
