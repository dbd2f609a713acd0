"""A search's own figures, drawn by Optuna's visualization module (plotly), not redrawn here: the
optimisation history, parameter importances, parallel coordinates and every trial's per-epoch
curve as the pruner saw it (pruned trials' partial curves included); with several objectives, the
Pareto front. Saved beside `sweeper plot`'s figure, logged to the parent run under figures/, and
linked from `sweeper report`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import optuna
import plotly.graph_objects as go

from sweeper.plots import save_figure
from sweeper.runs import best as best_run
from sweeper.runs import tracking
from sweeper.schema.spec import Spec
from sweeper.sweep.study import storage_url, study_name
from sweeper.tables.runs import read_runs, resolve

# figure name -> (title, how Optuna draws it from a study and the objective's metric names)
Draw = Callable[[optuna.Study, list[str]], go.Figure]
FIGURES: dict[str, tuple[str, Draw]] = {
    "history": (
        "optimisation history",
        lambda s, m: optuna.visualization.plot_optimization_history(s, target_name=m[0]),
    ),
    "importances": (
        "parameter importances",
        lambda s, m: optuna.visualization.plot_param_importances(s, target_name=m[0]),
    ),
    "parallel": (
        "parallel coordinates",
        lambda s, m: optuna.visualization.plot_parallel_coordinate(s, target_name=m[0]),
    ),
    "curves": (
        "per-epoch values, pruned trials' partial curves included",
        lambda s, m: optuna.visualization.plot_intermediate_values(s),
    ),
}
PARETO: dict[str, tuple[str, Draw]] = {
    "pareto": ("Pareto front", lambda s, m: optuna.visualization.plot_pareto_front(s, target_names=m)),
    "curves": FIGURES["curves"],
}


def search_figures(
    name: str,
    profile: str | None,
    folder: Path,
    tracking_uri: str | None = None,
    png: bool = True,
    storage: str | None = None,
) -> list[tuple[str, list[Path]]]:
    """Write a search's figures to folder/NAME-PROFILE-<figure>.html (and .png), log them to its parent run;
    [(title, files)] in drawing order, empty for rows and grids. A figure Optuna cannot draw yet
    (importances need two completed trials) is left out."""
    spec, profile = read_runs(tracking_uri, lambda runs: resolve(name, runs, profile)[:2])
    if spec.search is None:
        return []
    uri = get_uri(tracking_uri)
    study = optuna.load_study(study_name=study_name(spec, profile), storage=storage_url(storage, uri))
    metrics = spec.search.metrics()
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", f"{spec.name}-{profile or 'default'}")
    out = []
    for key, (title, draw) in (PARETO if len(metrics) > 1 else FIGURES).items():
        figure = _drawn(draw, study, metrics)
        if figure is not None:
            figure.update_layout(title=f"{spec.title or spec.name} [{profile or 'default'}]: {title}")
            out.append((title, save_figure(figure, folder / f"{stem}-{key}", png=png)))
    _log(spec, profile, uri, [f for _, files in out for f in files])
    return out


def _drawn(draw: Draw, study: optuna.Study, metrics: list[str]) -> go.Figure | None:
    """Optuna's figure, None where it cannot be drawn from the trials so far."""
    try:
        return draw(study, metrics)
    except (ValueError, RuntimeError, ZeroDivisionError):  # too few completed trials for the statistic
        return None


def get_uri(tracking_uri: str | None) -> str:
    """The resolved tracking URI (the sweep's Optuna storage sits beside a local one)."""
    from sweeper.settings import get_settings

    return get_settings().resolved_tracking_uri(tracking_uri)


def _log(spec: Spec, profile: str | None, uri: str, files: list[Path]) -> None:
    """Log the figures under figures/ of the sweep's parent run."""
    store = tracking.open_store(uri, create=False)
    exp_id = tracking.experiment_id(store, spec.name, create=False)
    parent = best_run.parent_run(store, exp_id, profile) if exp_id else None
    if parent is not None and files:
        tracking.log_files(store, parent, files, "figures")


def report_section(report: Path, tracking_uri: str | None = None, png: bool = True) -> list[Path]:
    """Append each search's figures to a written report.md (a `## Searches` section); returns the files."""
    from sweeper.tables.report import sweeps

    out, parts, written = report.parent, [], []
    store = tracking.open_store(tracking_uri, create=False)
    for name, profile in sweeps(store):
        figures = search_figures(name, profile, out / "figures", store.uri, png)
        if not figures:
            continue
        links = [
            f"[{title}]({f.relative_to(out).as_posix()})"
            for title, files in figures
            for f in files
            if f.suffix == ".html"
        ]
        images = [
            f"![{title}]({f.relative_to(out).as_posix()})"
            for title, files in figures
            for f in files
            if f.suffix == ".png"
        ]
        parts.append(f"### {name} [{profile}]\n\n" + "\n\n".join(images + ["Figures: " + ", ".join(links)]) + "\n")
        written += [f for _, files in figures for f in files]
    if parts:
        with report.open("a") as handle:
            handle.write("\n## Searches\n\nOptuna's figures of each search's study.\n\n" + "\n".join(parts))
    return written
