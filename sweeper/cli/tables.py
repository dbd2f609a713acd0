"""Commands that read tracked runs back: `table`, `plot`, `report`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sweeper.catalogue import TABLE_FORMATS
from sweeper.cli.common import NameArg, ProfileOpt, UriOpt, command, console, say


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    command(app)(table)
    command(app)(plot)
    command(app)(report)


def table(
    name: NameArg,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=", ".join(TABLE_FORMATS.names))] = "markdown",
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of printing.")] = None,
    check: Annotated[
        Optional[Path], typer.Option(help="Exit 1, with a diff, if this markdown file's table differs from the runs.")
    ] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Also count runs of older versions of the spec's rows.")
    ] = False,
    reported: Annotated[
        str, typer.Option(help="The report's values beside ours: inline, column, or off (no verdict either).")
    ] = "inline",
    check_reported: Annotated[
        bool, typer.Option("--check-reported", help="Exit 1 if a finished row is out of tolerance of its report.")
    ] = False,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="With -f csv: the numbers (mean, std, n, seeds, reported, delta, p) unformatted."),
    ] = False,
) -> None:
    """Rebuild the spec's table from the tracked runs alone (and log it to the sweep's run as table.md)."""
    from sweeper import tables

    built = tables.build(name, profile, tracking_uri, all_versions=all_versions, reported=reported)
    tables.publish(built, tracking_uri)  # table.md on the sweep's run, for the MLflow UI
    if check:
        same, diff = tables.check(built, check)
        sys.stdout.write(diff if not same else f"{check}: the table of '{built.name}' matches the runs.\n")
        raise typer.Exit(0 if same else 1)
    text = raw_text(built, fmt) if raw else tables.render(built, fmt)
    if check_reported:
        outside = tables.out_of_tolerance(built)
        sys.stdout.write(text)
        if outside:
            sys.stderr.write("Out of tolerance of the report: " + "; ".join(outside) + "\n")
        raise typer.Exit(1 if outside else 0)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def raw_text(built: object, fmt: str) -> str:
    """`--raw`: the table's numbers as CSV (sweeper.tables.raw), the same records as sweeper.table().to_pandas()."""
    from sweeper.errors import UserError
    from sweeper.tables.raw import raw_csv

    if fmt != "csv":
        raise UserError(f"--raw gives numbers as CSV: use it with -f csv (not -f {fmt}).")
    return raw_csv(built)  # type: ignore[arg-type]


def plot(
    name: NameArg,
    metric: Annotated[
        str, typer.Option(help="The per-epoch metric to overlay, e.g. val_acc, val_loss, train_loss.")
    ] = "val_acc",
    bar_metric: Annotated[
        Optional[str], typer.Option(help="The table metric of the bar chart; default its first.")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="The HTML file; default results/NAME-PROFILE-METRIC.html.")
    ] = None,
    profile: ProfileOpt = None,
    tracking_uri: UriOpt = None,
    png: Annotated[bool, typer.Option(help="Also write a PNG beside the HTML (needs Chromium).")] = True,
) -> None:
    """Overlay every row's per-epoch curve (mean over seeds, min-max band) beside a bar chart of the table metric."""
    from sweeper.tables import report as reporting

    files = reporting.plot(name, metric, out, profile, tracking_uri, bar_metric, png)
    files += search_files(name, profile, files[0].parent, tracking_uri, png)
    console.print(
        "wrote " + ", ".join(str(f) for f in files) + " (also logged to the sweep's MLflow run)", soft_wrap=True
    )


def report(
    out: Annotated[Path, typer.Option(help="Folder for report.md and its figures.")] = Path("results"),
    metric: Annotated[str, typer.Option(help="The per-epoch metric of each sweep's figure.")] = "val_acc",
    figures: Annotated[bool, typer.Option(help="Draw each sweep's comparison figure.")] = True,
    png: Annotated[bool, typer.Option(help="Also write each figure as PNG (needs Chromium).")] = True,
    tracking_uri: UriOpt = None,
) -> None:
    """Write one markdown report with the table of every sweep in the store and links to its figures."""
    from sweeper.tables import report as reporting
    from sweeper.tables.summary import ui_links

    written = reporting.report(out, tracking_uri, metric, figures, png)
    if figures:  # a search's own figures (Optuna's), linked at the end of the report
        from sweeper.sweep.figures import report_section

        report_section(written, tracking_uri, png)
    console.print(f"wrote {written}")
    say("MLflow, each sweep's runs with its table as the parent run's description:")
    for link in ui_links(tracking_uri):
        say(f"  {link}")


def search_files(name: str, profile: str | None, folder: Path, tracking_uri: str | None, png: bool) -> list[Path]:
    """A search's Optuna figures beside the comparison figure (nothing for rows and grids)."""
    from sweeper.sweep.figures import search_figures

    return [f for _, files in search_figures(name, profile, folder, tracking_uri, png) for f in files]
