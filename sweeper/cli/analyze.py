"""`sweeper analyze`: BatchNorm probes, loss landscapes, filters; figures logged to MLflow."""

from __future__ import annotations

from typing import Annotated

import typer

from sweeper.cli.common import DeviceOpt, NameArg, OutOpt, ProfileOpt, UriOpt, command, console, say

RowOpt = Annotated[str, typer.Option("--row", "-r", help="The row label, e.g. 'VGG-A(BN) lr=1e-3'.")]


def register(app: typer.Typer) -> None:
    """Add the `analyze` group to the root app."""
    group = typer.Typer(
        no_args_is_help=True, help="BatchNorm probes, loss landscapes, filters: figures logged to MLflow."
    )
    command(group, "bn")(analyze_bn)
    command(group, "landscape")(analyze_landscape)
    command(group, "filters")(analyze_filters)
    app.add_typer(group, name="analyze")


def _logged(paths: list[str], where: str) -> None:
    say(f"logged to {where}: " + ", ".join(paths))


def analyze_bn(
    name: NameArg,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    group: Annotated[str, typer.Option(help="The param whose values are the compared models.")] = "model.batch_norm",
    smooth: Annotated[int, typer.Option(min=1, help="Moving average of the per-step loss over this many steps.")] = 1,
    out: OutOpt = None,
) -> None:
    """Loss band across learning rates and the Santurkar probe figures, logged to the sweep's parent run."""
    from sweeper.analysis.study import bn_study

    _logged(bn_study(name, profile, tracking_uri, group=group, window=smooth, out=out), "the sweep's parent run")


def analyze_landscape(
    name: NameArg,
    row: RowOpt,
    checkpoint: Annotated[
        list[str], typer.Option(help="best, last, init, an artifact path of the run or a local .pt; repeat to compare.")
    ] = ["best"],  # noqa: B006
    grid: Annotated[int, typer.Option(min=2, help="Points per axis.")] = 21,
    subset: Annotated[int, typer.Option(min=1, help="Training images the loss is averaged over.")] = 1000,
    span: Annotated[float, typer.Option(help="The grid covers [-span, span] along each direction.")] = 1.0,
    batch: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the directions and of the image subset.")] = 0,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
) -> None:
    """2D loss surface (Li et al. 2018, filter-normalised directions) of one row's run at checkpoints."""
    from sweeper.analysis.trained import landscape_study

    paths = landscape_study(
        name,
        row,
        checkpoint,
        grid=grid,
        subset=subset,
        span=span,
        batch=batch,
        seed=seed,
        profile=profile,
        tracking_uri=tracking_uri,
        device=device,
        console=console,
        out=out,
    )
    _logged(paths, f"the run of '{row}'")


def analyze_filters(
    name: NameArg,
    row: RowOpt,
    checkpoint: Annotated[
        str, typer.Option(help="best, last, init, an artifact path of the run or a local .pt.")
    ] = "last",
    image: Annotated[int, typer.Option(help="Index of the test image whose feature maps are drawn.")] = 0,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    out: OutOpt = None,
) -> None:
    """First-layer kernels (RGB and grayscale) and one test image's feature maps after the first conv."""
    from sweeper.analysis.trained import filters_study

    paths = filters_study(name, row, checkpoint, image=image, profile=profile, tracking_uri=tracking_uri, out=out)
    _logged(paths, f"the run of '{row}'")
