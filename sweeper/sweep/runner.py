"""One claimed cell, top to bottom, in its MLflow child run: `train_cell` reads in one screen.

Training yields its epochs; here each one is checkpointed (stored before its metrics), logged,
reported to the trial and judged by the pruner. A killed cell continues from its checkpoint in the
same run; a finished one leaves its curves, first-layer filters and feature maps, and the best model
as an MLflow model. Pruning and failure are translated to Optuna's terms here, once.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from rich.progress import Progress
from torch import nn

from sweeper import plots
from sweeper.analysis.filters import cell_images
from sweeper.catalogue import NORMALIZATIONS
from sweeper.errors import Pruned, warn
from sweeper.runs import cellrun, checkpoints, tracking
from sweeper.runs.faults import StoreUnavailable
from sweeper.schema import plugins, usercode
from sweeper.schema.spec import Cell, Spec
from sweeper.sweep import seeds
from sweeper.training import memory
from sweeper.training import state as training_state
from sweeper.training.data import CifarData
from sweeper.training.device import cpu_model, gpu_facts, gpu_tags
from sweeper.training.precision import resolve_for, tf32_enabled
from sweeper.training.probes import make_step_hook
from sweeper.training.state import Checkpoint
from sweeper.training.train import Epoch, OnStep, Training, TrainResult
from sweeper.vocab import Attr, Tag


class CellFailed(Exception):
    """The cell raised: its MLflow run is FAILED with the error, and its trial FAIL with it."""


@dataclass
class Pruning:
    """What a cell's epochs show its trial's pruner: the watched metric and, in a search over seeds, the mean so
    far of its trial group (the curves, this cell's index in them). A multi-objective study is never pruned."""

    watch: str
    curves: seeds.Curves | None = None
    index: int = 0
    enabled: bool = True


def objective(spec: Spec) -> tuple[list[str], str]:
    """(the summary metrics a trial returns, one per objective; the per-epoch metric its pruner watches)."""
    search = spec.search
    return (search.metrics(), search.primary().epoch_metric()) if search else (["best_val_acc"], "val_acc")


def train_cell(
    record: cellrun.SweepRecord,
    cell: Cell,
    trial: optuna.Trial,
    data: CifarData,
    device: torch.device,
    progress: Progress,
    pruning: Pruning | None = None,
) -> dict[str, float]:
    """Train a claimed cell top to bottom in its MLflow run (new, or resumed in place); its summary metrics.

    Per epoch: checkpoint, then metrics, then report to the trial and prune. A pruned cell raises
    optuna.TrialPruned and a failed one CellFailed, each once its run is ended; Ctrl-C and a store that
    stopped taking writes (StoreUnavailable: the cell resumes later) pass through.
    """
    pruning = pruning or Pruning(objective(record.spec)[1])
    task, tick = progress.add_task(f"  {cell.name}", total=cell.config.epochs), time.perf_counter()
    tags = {Tag.STUDY: trial.study.study_name, Tag.TRIAL: str(trial.number)}
    try:
        with cellrun.cell_run(record, cell, tags) as log:
            if pruning.index == 0:  # a trial's run is its first seed's; a retried trial's dead twin's is replaced
                trial.set_user_attr(Attr.MLFLOW_RUN, log.run_id)
            earlier = _open(log, cell, data, device, progress, task)
            host_copy = checkpoints.HostCopier(device)  # pinned, asynchronous, one wait; best weights once per gain
            with Training(cell.config, data, device=device, on_step=_probes(cell, log), resume=log.resume) as training:
                for epoch in training:
                    memory.record_peak(cell.config, device)  # what the next cell of this shape is admitted by
                    log.log_epoch(epoch.metrics, _checkpoint(epoch, cell, device, host_copy), best=epoch.best)
                    progress.update(
                        task,
                        completed=epoch.number,
                        description=f"  {cell.name} val_acc {epoch.metrics['val_acc']:.3f}",
                    )
                    _report(trial, epoch.number, epoch.metrics.get(pruning.watch, math.nan), pruning)
                result = training.finish()
            log.flush()
            log_results(log, cell, data, result)
            log.log_summary({**result.summary, "train_time": earlier + time.perf_counter() - tick})
    except Pruned as exc:  # the run is KILLED and tagged pruned by cell_run
        progress.console.print(f"[yellow]{cell.name} pruned: {exc}[/]")
        raise optuna.TrialPruned(str(exc)) from None
    except StoreUnavailable:  # the store's disk is full or read-only: the sweep stops, the cell resumes later
        raise
    except Exception as exc:  # the run is FAILED with the error by cell_run; the sweep goes on
        error = plugins.raised_in_user_code(exc)  # with the file:line where the user's code raised it
        progress.console.print(f"[red]{cell.name} failed: {error}[/]")
        trial.set_user_attr(Attr.ERROR, error)
        raise CellFailed(error) from exc
    finally:
        progress.remove_task(task)
    s = result.summary
    val = (
        "" if math.isnan(s["best_val_acc"]) else f"best val {100 * s['best_val_acc']:.2f}% @ epoch {s['best_epoch']}, "
    )
    progress.console.print(
        f"{cell.name}: test_acc {100 * s['test_acc']:.2f}% ({val}{time.perf_counter() - tick:.0f} s)"
    )
    return s


def _open(
    log: cellrun.CellLogger, cell: Cell, data: CifarData, device: torch.device, progress: Progress, task: Any
) -> float:
    """Tag the run's data, code and device; say where a resumed run picks up. The training time it had so far."""
    log_data(log, data)
    log_code(log, cell)
    memory.check_cell(cell.name, cell.config, device)  # frees the last cell's cache; refuses a cell that cannot fit
    log.set_tags(device_tags(device, cell.config.precision, log.resume))
    if log.resume is None:
        return 0.0
    progress.update(task, completed=log.resume["epoch"])
    progress.console.print(f"{cell.name}: resuming run {log.run_id} after epoch {log.resume['epoch']}")
    return sum(h["epoch_time"] for h in log.resume["history"])


def _probes(cell: Cell, log: cellrun.CellLogger) -> OnStep | None:
    """The analysis probes' per-step hook, logging through the run; only when asked for (a sync per step)."""
    return make_step_hook(cell.config, log.log_step) if cell.config.probe is not None else None


def _checkpoint(epoch: Epoch, cell: Cell, device: torch.device, host_copy: checkpoints.HostCopier) -> Checkpoint:
    """The epoch's resumable state as the checkpoint file holds it, copied to the host before training moves on."""
    state = host_copy(training_state.checkpoint(epoch.state(), cell.id, cell.config.model_dump(mode="json")))
    return checkpoints.to_cpu(state) if device.type == "mps" else state  # MPS is unsafe from a second thread


def _report(trial: optuna.Trial, epoch: int, value: float, pruning: Pruning) -> None:
    """Show the trial the epoch's value (a seed group's mean so far); the pruner's stop is Pruned, which ends the
    run KILLED, not FAILED. The epoch attribute is written last: whoever sees it (a SLURM signal sent at an
    epoch's end, in the requeue test) finds this epoch's storage writes done, not cut off mid-commit."""
    prune, shown = False, value
    if math.isfinite(value) and pruning.enabled:
        step, shown = pruning.curves.step(pruning.index, epoch, value) if pruning.curves else (epoch, value)
        trial.report(shown, step)
        prune = trial.should_prune()
    trial.set_user_attr(Attr.EPOCH, epoch)
    if prune:
        mean = f" (mean of {pruning.index + 1} seeds)" if pruning.index else ""
        raise Pruned(f"pruned at epoch {epoch}: {pruning.watch} {shown:.4f}{mean}")


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
        # The network that trained (done with it now), on the host with its best epoch's weights: built once a cell.
        model = result.model.to("cpu")
        model.load_state_dict(result.best_state)
        model.eval()
        split = next(s for s in (data.test, data.val, data.train) if len(s))
        with tempfile.TemporaryDirectory() as tmp:  # PNGs drawn with PIL: no browser, no plotly.js per run
            images = cell_images(model, split.images[0], cell.config.data.normalize)
            log.log_files([plots.save_image(image, Path(tmp) / stem) for stem, image in images.items()], "plots")
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
    tags |= gpu_tags(gpu_facts(device), os.environ) if device.type == "cuda" else {}
    return tags | ({Tag.PRECISION_CONVERTED: resolved.converted} if resolved.converted else {})
