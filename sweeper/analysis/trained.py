"""Analyses of one trained run at a checkpoint: its 2D loss surface and its first-layer filters."""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sweeper.analysis.figures import landscape_figure
from sweeper.analysis.filters import feature_maps, feature_maps_image, filters_image, first_layer_filters
from sweeper.analysis.landscape import loss_surface, random_direction, surface_cost
from sweeper.analysis.study import SweepRuns, load_sweep, save_and_log
from sweeper.errors import UserError
from sweeper.runs import tracking
from sweeper.schema.spec import Cell
from sweeper.settings import get_settings
from sweeper.training.augment import normalize
from sweeper.training.data import load_cached, make_splits
from sweeper.training.device import pick_device
from sweeper.training.train import build_model


def pick_run(sweep: SweepRuns, row: str, seed: int | None = None) -> tuple[Cell, Any]:
    """The finished run of a row (its first seed unless one is given); an unknown row is a UserError."""
    found = [(c, r) for c, r in sweep.runs if c.label == row and (seed is None or c.seed == seed)]
    if not found:
        labels = list(dict.fromkeys(c.label for c, _ in sweep.runs))
        raise UserError(
            f"sweep '{sweep.spec.name}' has no finished run of row '{row}'"
            f"{f' seed {seed}' if seed is not None else ''}; finished rows: {', '.join(labels)}."
        )
    return found[0]


def load_checkpoint(sweep: SweepRuns, run: Any, which: str, tmp: Path) -> dict[str, Any] | None:
    """A state dict: 'best'/'last' (the run's checkpoints/NAME.pt), another artifact, a local file; 'init' is None."""
    if which == "init":
        return None
    local = Path(which)
    if not local.is_file():
        artifact = f"checkpoints/{which}.pt" if which in ("best", "last") else which
        local = tracking.download_artifact(sweep.store, run.info.run_id, artifact, tmp)
    try:
        state = torch.load(local, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
        raise UserError(
            f"checkpoint '{which}' ({local}) is not a torch checkpoint ({type(exc).__name__}: {exc})."
        ) from None
    return state["model"] if isinstance(state, dict) and "model" in state else state


def model_at(cell: Cell, state: dict[str, Any] | None, device: torch.device, which: str) -> torch.nn.Module:
    """The cell's network with a checkpoint's weights (None: its initial weights, seeded as training seeds them)."""
    if state is None:
        torch.manual_seed(cell.config.seed)  # train.train seeds torch's RNG with cfg.seed just before building
    model = build_model(cell.config)
    if state is not None:
        try:
            model.load_state_dict(state)
        except (RuntimeError, KeyError) as exc:
            raise UserError(
                f"checkpoint '{which}' does not fit row '{cell.label}' ({cell.config.model.name}): {exc}"
            ) from None
    return model.to(device)


def cell_split(cell: Cell, split: str = "train") -> Any:
    """One split of the cached CIFAR-10 as the cell saw it (the same seeded, stratified subsets)."""
    d = cell.config.data
    train, test = load_cached(get_settings().data_dir)
    data = make_splits(train, test, val_size=d.val_size, train_size=d.train_size, test_size=d.test_size, seed=0)
    return getattr(data, split)


def _stem(which: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(which).stem)


def landscape_study(
    name: str,
    row: str,
    checkpoints: list[str],
    *,
    grid: int = 21,
    subset: int = 1000,
    span: float = 1.0,
    batch: int = 500,
    seed: int = 0,
    run_seed: int | None = None,
    profile: str | None = None,
    tracking_uri: str | None = None,
    device: str = "auto",
    console: Console | None = None,
    out: Path | None = None,
) -> list[str]:
    """2D loss surfaces of one row's run at each checkpoint, logged to that run under figures/landscape/."""
    if grid < 2 or subset < 1 or span <= 0 or batch < 1:
        raise UserError(
            f"landscape needs grid >= 2, subset >= 1, span > 0 and batch >= 1 (got {grid}, {subset}, {span}, {batch})."
        )
    console = console or Console()
    sweep = load_sweep(name, profile, tracking_uri)
    cell, run = pick_run(sweep, row, run_seed)
    dev = pick_device(device)
    train = cell_split(cell, "train")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:subset]
    x = normalize(train.images[idx].to(dev), cell.config.data.normalize)
    y = train.labels[idx].to(dev)
    cost = surface_cost(grid, len(idx), batch, len(checkpoints))
    console.print(f"{row}: {len(checkpoints)} checkpoint(s) x {grid}x{grid} grid on {dev}: {cost}.")
    surfaces = []
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with tempfile.TemporaryDirectory() as tmp, Progress(*columns, console=console) as progress:
        for which in checkpoints:
            model = model_at(cell, load_checkpoint(sweep, run, which, Path(tmp)), dev, which)
            generator = torch.Generator().manual_seed(seed)  # the same directions (before scaling) at every checkpoint
            directions = (random_direction(model, generator), random_direction(model, generator))
            task = progress.add_task(f"loss surface at {which}", total=grid * grid)
            surfaces.append(
                loss_surface(
                    model,
                    directions,
                    x,
                    y,
                    grid=grid,
                    span=span,
                    batch=batch,
                    label=which,
                    on_point=functools.partial(progress.advance, task),
                )
            )
    stem = "landscape_" + "_".join(_stem(w) for w in checkpoints)
    title = f"{sweep.spec.title or sweep.spec.name}: {row}"
    arrays = {
        stem: {
            "alphas": surfaces[0].alphas,
            "betas": surfaces[0].betas,
            **{f"loss_{_stem(s.label)}": s.loss for s in surfaces},
            **{f"acc_{_stem(s.label)}": s.acc for s in surfaces},
        }
    }
    return save_and_log(
        sweep, run.info.run_id, {stem: landscape_figure(surfaces, title)}, "figures/landscape", out, arrays
    )


def filters_study(
    name: str,
    row: str,
    checkpoint: str = "last",
    *,
    image: int = 0,
    run_seed: int | None = None,
    profile: str | None = None,
    tracking_uri: str | None = None,
    out: Path | None = None,
) -> list[str]:
    """First-layer kernels (RGB and grayscale) and one test image's feature maps, logged under figures/filters/."""
    sweep = load_sweep(name, profile, tracking_uri)
    cell, run = pick_run(sweep, row, run_seed)
    with tempfile.TemporaryDirectory() as tmp:
        model = model_at(cell, load_checkpoint(sweep, run, checkpoint, Path(tmp)), torch.device("cpu"), checkpoint)
    test = cell_split(cell, "test")
    if not 0 <= image < len(test):
        raise UserError(f"--image {image} is outside the test split of row '{row}' (0..{len(test) - 1}).")
    picture = test.images[image].numpy()
    weights = first_layer_filters(model)
    maps = feature_maps(model, picture, cell.config.data.normalize)
    stem = f"{_stem(checkpoint)}"
    figures = {
        f"filters_{stem}_rgb": filters_image(weights),
        f"filters_{stem}_gray": filters_image(weights, grayscale=True),
        f"feature_maps_{stem}_test{image}": feature_maps_image(maps, picture),
    }
    return save_and_log(sweep, run.info.run_id, figures, "figures/filters", out)
