"""`sweeper analyze ...`: read a sweep's runs and checkpoints from MLflow, compute, draw, log the figures back."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweeper.analysis.curves import band
from sweeper.analysis.figures import band_overlay_figure, loss_band_figure
from sweeper.errors import UserError
from sweeper.plots import save_any
from sweeper.runs import cells, tracking
from sweeper.schema.spec import Cell, Spec, expand
from sweeper.secrets import mask_uri
from sweeper.settings import get_settings
from sweeper.tables.runs import resolve_spec
from sweeper.vocab import Tag, profile_tag

STEP_KEYS = ("step_loss", "probe_loss_min", "probe_loss_max", "grad_pred_min", "grad_pred_max", "beta_smooth")


@dataclass
class SweepRuns:
    """A sweep's spec and profile, its parent run, and the finished run of each cell, in table order."""

    store: tracking.Store
    spec: Spec
    profile: str | None
    parent_id: str
    runs: list[tuple[Cell, Any]]


def load_sweep(name: str, profile: str | None, tracking_uri: str | None, include_failed: bool = False) -> SweepRuns:
    """The finished cell runs of a sweep (name or spec path), failed ones too if asked; none is a UserError."""
    store = tracking.open_store(tracking_uri)
    spec, profile = resolve_spec(name, tracking.MlflowRuns(store), profile)
    exp_id = tracking.experiment_id(store, spec.name, create=False)
    tag = profile_tag(profile)
    parents = [r for r in tracking.sweep_runs(store, exp_id) if r.data.tags.get(Tag.PROFILE) == tag] if exp_id else []
    # a run that diverged still logged its per-step curve up to the divergence: it is the band's edge
    wanted = {"finished", "failed"} if include_failed else {"finished"}
    picks = cells.pick_runs(expand(spec, profile), tracking.cell_runs(store, exp_id)) if exp_id else []
    runs = [(p.cell, p.run) for p in picks if p.state in wanted]
    if not parents or not runs:
        raise UserError(
            f"sweep '{spec.name}' (profile {tag}) has no finished runs in {mask_uri(store.uri)}; "
            f"run `sweeper run experiments/{spec.name}.yaml{f' -p {profile}' if profile else ''}` first."
        )
    return SweepRuns(store, spec, profile, parents[0].info.run_id, runs)


def _group_name(key: str, value: str) -> str:
    if key == "model.batch_norm":
        return "with BatchNorm" if value == "True" else "without BatchNorm"
    return f"{key}={value}"


def save_and_log(
    sweep: SweepRuns,
    run_id: str,
    figures: dict[str, Any],
    folder: str,
    out: Path | None,
    arrays: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Save figures (HTML, plus PNG where plots can), pictures (PNG) and data (.npz); log them into a run's folder."""

    with tempfile.TemporaryDirectory() as tmp:
        root = out or Path(tmp)
        files = [f for stem, fig in figures.items() for f in save_any(fig, root / stem, get_settings().png)]
        for stem, data in (arrays or {}).items():
            root.mkdir(parents=True, exist_ok=True)
            np.savez(root / f"{stem}.npz", **data)
            files.append(root / f"{stem}.npz")
        return tracking.log_files(sweep.store, run_id, files, folder)


def bn_study(
    name: str,
    profile: str | None = None,
    tracking_uri: str | None = None,
    *,
    group: str = "model.batch_norm",
    window: int = 1,
    out: Path | None = None,
) -> list[str]:
    """Loss band across learning rates and the probe figures of a sweep, logged to its parent run."""
    sweep = load_sweep(name, profile, tracking_uri, include_failed=True)
    groups: dict[str, dict[str, list]] = {}
    for _, run in sweep.runs:
        value = run.data.params.get(group)
        if value is None:
            raise UserError(f"run {run.info.run_id} of sweep '{sweep.spec.name}' has no param '{group}' to group by.")
        series = groups.setdefault(_group_name(group, value), {k: [] for k in STEP_KEYS})
        for key in STEP_KEYS:
            series[key].append(tracking.metric_history(sweep.store, run.info.run_id, key))
    order = sorted(groups)[::-1] if group == "model.batch_norm" else sorted(groups)  # without BN first

    def bands(low: str, high: str | None = None, w: int = window) -> list:
        found = [g for g in order if any(groups[g][low])]
        return [band(g, groups[g][low], groups[g][high or low], w) for g in found]

    if not bands("step_loss"):
        raise UserError(
            f"the runs of sweep '{sweep.spec.name}' logged no per-step loss: give the spec's base a "
            "`probe:` block (step_loss: true), as experiments/bn_landscape_002.yaml does, and run it again."
        )
    title = sweep.spec.title or sweep.spec.name
    figures = {
        "loss_band": loss_band_figure(
            bands("step_loss"), f"{title}<br><sup>training loss per step, min-max over learning rates</sup>"
        )
    }
    if bands("beta_smooth"):
        ranges = "min-max over step sizes and learning rates"
        figures["probe_loss_range"] = band_overlay_figure(
            bands("probe_loss_min", "probe_loss_max", 1),
            f"{title}<br><sup>loss along the gradient, {ranges}</sup>",
            "loss",
        )
        figures["probe_grad_pred"] = band_overlay_figure(
            bands("grad_pred_min", "grad_pred_max", 1),
            f"{title}<br><sup>gradient predictiveness, {ranges}</sup>",
            "||grad(w - eta g) - g||",
            log_y=True,
        )
        figures["probe_beta_smooth"] = band_overlay_figure(
            bands("beta_smooth", None, 1),
            f"{title}<br><sup>effective beta-smoothness, min-max over learning rates</sup>",
            "max ||grad(w - eta g) - g|| / ||eta g||",
            log_y=True,
        )
    return save_and_log(sweep, sweep.parent_id, figures, "figures/bn", out)
