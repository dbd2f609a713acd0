"""Train one cell inside its MLflow child run: the seam between the loop and the tracking store.

Each epoch hands the tracking worker a snapshot of the resumable state (stored before the
epoch's metrics), a killed cell continues from it in the same run, and a finished cell leaves
its curves, first-layer filters and feature maps, and the best model as an MLflow model.
"""

from __future__ import annotations

import math
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress
from torch import nn

from sweeper import plots
from sweeper.analysis.filters import cell_figures
from sweeper.catalogue import NORMALIZATIONS
from sweeper.errors import Pruned, warn
from sweeper.runs import cellrun, checkpoints, tracking
from sweeper.schema import plugins, usercode
from sweeper.schema.spec import Cell, Spec
from sweeper.settings import get_settings
from sweeper.training import state as training_state
from sweeper.training.data import CifarData
from sweeper.training.device import cpu_model
from sweeper.training.precision import resolve_for, tf32_enabled
from sweeper.training.probes import make_step_hook
from sweeper.training.train import OnStep, Training, TrainResult, build_model
from sweeper.vocab import Tag


@dataclass
class CellOutcome:
    """How one cell ended: its display name, its MLflow run (None if none was made), whether it finished, and its summary."""

    name: str
    run_id: str | None
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
    on_run: Callable[[str], None] | None = None,
    on_epoch_hook: Callable[[dict[str, float]], None] | None = None,
    on_step: OnStep | None = None,
    extra_tags: dict[str, str] | None = None,
) -> CellOutcome:
    """Train one cell, logging every epoch; a failure is recorded on the run and returned, not raised.

    `on_run` gets the cell's MLflow run id as soon as the run exists (new or resumed); `on_epoch_hook` sees each epoch's metrics once its checkpoint and metrics are queued for the
    store (the sweeper's pruner raises `Pruned` from it); `on_step` is passed to the training loop
    (analysis probes). An interrupted earlier run of the cell is continued in place.
    """
    name = cell.name
    task = progress.add_task(f"  {name}", total=cell.config.epochs)
    tick = time.perf_counter()
    run_id = None
    try:
        with cellrun.cell_run(store, exp_id, parent, cell, spec, profile, extra_tags) as log:
            run_id = log.run_id
            if on_run is not None:
                on_run(run_id)
            log_data(log, data)
            log_code(log, cell)
            # Before training: a resumed history grows as training continues it.
            earlier = sum(h["epoch_time"] for h in log.resume["history"]) if log.resume else 0.0
            result = _train_logged(log, cell, data, device, progress, task, on_epoch_hook, on_step)
            log_results(log, cell, data, result)
            log.log_summary({**result.summary, "train_time": earlier + time.perf_counter() - tick})
    except Pruned as exc:  # the run is tagged pruned and ended KILLED by cell_run
        progress.remove_task(task)
        progress.console.print(f"[yellow]{name} pruned: {exc}[/]")
        return CellOutcome(name, run_id, ok=False, pruned=True, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the run is marked FAILED with the error; the sweep goes on
        progress.remove_task(task)
        progress.console.print(f"[red]{name} failed: {type(exc).__name__}: {exc}[/]")
        return CellOutcome(name, run_id, ok=False, error=f"{type(exc).__name__}: {exc}")
    progress.remove_task(task)
    s = result.summary
    val = (
        "" if math.isnan(s["best_val_acc"]) else f"best val {100 * s['best_val_acc']:.2f}% @ epoch {s['best_epoch']}, "
    )
    progress.console.print(f"{name}: test_acc {100 * s['test_acc']:.2f}% ({val}{time.perf_counter() - tick:.0f} s)")
    return CellOutcome(name, run_id, ok=True, summary=s)


def log_code(log: cellrun.CellLogger, cell: Cell) -> None:
    """The user's code a cell runs: each file as an artifact under code/, and reference@digest as a tag per block
    (cell ids leave the file's content out, so a table can say when rows ran different versions)."""
    tags: dict[str, str] = {}
    files: list[Path] = []
    for loc, reference in usercode.references(cell.config).items():
        loaded = plugins.lookup(reference)
        if loaded is None:
            continue
        tags[f"{Tag.CODE}{loc[0]}"] = f"{reference}@{loaded.digest}"
        if loaded.source is not None and loaded.source not in files:
            files.append(loaded.source)
    if tags:
        log.set_tags(tags)
        log.log_files(files, "code")


def log_data(log: cellrun.CellLogger, data: CifarData) -> None:
    """Which data the cell trains on: an MLflow dataset input for the UI, and tags for the tables."""
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    log.set_tags(
        {
            Tag.DATASET: data.name,
            Tag.DATASET_DIGEST: data.digest,
            Tag.DATA_SOURCE: data.source,
            Tag.TRAIN_SIZE: str(sizes["train"]),
        }
    )
    try:
        tracking.log_dataset(log.store, log.run_id, data.name, data.digest, data.source, sizes)
    except Exception as exc:  # noqa: BLE001 - the tags above name the data for tables; the UI column can wait
        warn(f"dataset input not logged to run {log.run_id} ({type(exc).__name__}: {exc})")


def _train_logged(
    log: cellrun.CellLogger,
    cell: Cell,
    data: CifarData,
    device: torch.device,
    progress: Progress,
    task: Any,
    on_epoch_hook: Callable[[dict[str, float]], None] | None,
    on_step: OnStep | None,
) -> TrainResult:
    """The training loop with every epoch checkpointed and logged (from the run's checkpoint when resumed)."""
    name = cell.name
    log.set_tags(device_tags(device, cell.config.precision, log.resume))
    if log.resume is not None:
        progress.update(task, completed=log.resume["epoch"])
        progress.console.print(f"{name}: resuming run {log.run_id} after epoch {log.resume['epoch']}")
    config = cell.config.model_dump(mode="json")
    if on_step is None and cell.config.probe is not None:  # probes cost a sync per step: only when asked for
        on_step = make_step_hook(cell.config, log.log_step)
    with Training(cell.config, data, device=device, on_step=on_step, resume=log.resume) as training:
        for epoch in training:  # each epoch: checkpoint, then metrics (queued in that order), then the hook
            state = checkpoints.snapshot(training_state.checkpoint(epoch.state(), cell.id, config))
            if device.type == "mps":  # MPS is not safe to drive from a second thread: copy to the host here
                state = checkpoints.to_cpu(state)
            log.log_epoch(epoch.metrics, state, best=epoch.best)
            progress.update(
                task, completed=epoch.number, description=f"  {name} val_acc {epoch.metrics['val_acc']:.3f}"
            )
            if on_epoch_hook is not None:
                on_epoch_hook(epoch.metrics)
        result = training.finish()
    log.flush()
    return result


class PixelClassifier(nn.Module):
    """A trained network behind its input normalisation: float pixels 0..255, [N, 3, 32, 32] -> logits."""

    def __init__(self, model: nn.Module, preset: str):
        super().__init__()
        mean, std = NORMALIZATIONS.get(preset).mean, NORMALIZATIONS.get(preset).std
        self.model = model
        self.shift: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("shift", torch.tensor(mean).mul(255).view(1, -1, 1, 1))
        self.register_buffer("scale", torch.tensor(std).mul(255).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of raw pixel values."""
        return self.model((x - self.shift) / self.scale)


def log_results(log: cellrun.CellLogger, cell: Cell, data: CifarData, result: TrainResult) -> None:
    """Figures and the best model of a trained cell; a failure here is tagged, not fatal: training is done."""
    try:
        model = build_model(cell.config)
        model.load_state_dict(result.best_state)
        model.eval()
        split = next(s for s in (data.test, data.val, data.train) if len(s))
        png = get_settings().png
        with tempfile.TemporaryDirectory() as tmp:
            figures = cell_figures(
                result.history,
                model,
                split.images[0],
                cell.config.data.normalize,
                title=cell.name,
            )
            log.log_files(
                [f for stem, fig in figures.items() for f in plots.save_figure(fig, Path(tmp) / stem, png)], "plots"
            )
        log.log_model(PixelClassifier(model, cell.config.data.normalize).eval(), split.images[:2].float().numpy())
    except Exception as exc:  # noqa: BLE001 - the metrics and checkpoints of a finished run stand on their own
        warn(f"{cell.name}: figures/model not logged ({type(exc).__name__}: {exc})")
        log.set_tags({Tag.ARTIFACTS_ERROR: f"{type(exc).__name__}: {exc}"[:5000]})


def device_tags(device: torch.device, precision: str, resume: Any = None) -> dict[str, str]:
    """The device a cell trained on, by name (GPU model or CPU model), the precision it computes in
    (kept from the checkpoint when resumed, or converted with a note) and whether TF32 was on."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = f"Apple {platform.machine()} (MPS)"
    else:
        name = cpu_model()
    resolved = resolve_for(precision, device, resume)
    tags = {
        Tag.DEVICE: str(device),
        Tag.DEVICE_NAME: name,
        Tag.PRECISION: resolved.precision,
        Tag.TF32: "on" if tf32_enabled(resolved.precision, device) else "off",
    }
    return tags | ({Tag.PRECISION_CONVERTED: resolved.converted} if resolved.converted else {})
