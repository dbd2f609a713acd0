"""A search over seeds: each trial trains its configuration once per seed, as cells of one trial group.

The objective is the mean over the seeds. The pruner sees the mean so far: seed k's epoch e is
reported at step k * epochs + e as the mean of seeds 0..k at epoch e, so trials are compared at
the same progress and a configuration that is only lucky on its first seed can still be stopped
on a later one. One seed (rows, grids, single-seed searches): steps are plain epochs, as before.
"""

from __future__ import annotations

import statistics
from typing import Any

from sweeper.schema.spec import Cell, Spec, trial_cell


def group_of(spec: Spec, profile: str | None, cell: Cell, params: dict[str, Any], number: int) -> list[Cell]:
    """The cells a trial trains: its claimed cell, then (a search) the same configuration at every other seed."""
    if spec.search is None:
        return [cell]
    seeds = [s for s in spec.seeds_for(profile) if s != cell.seed]
    params = spec.search.decoded(params)  # a list choice comes back from Optuna as its text
    return [cell, *(trial_cell(spec, profile, params, number, seed=s) for s in seeds)]


class Curves:
    """The watched metric per seed and epoch of one trial group, and what the pruner is shown."""

    def __init__(self, cells: list[Cell]) -> None:
        self.epochs = max(c.config.epochs for c in cells)
        self.seen: list[dict[int, float]] = [{} for _ in cells]

    def record(self, index: int, history: list[tuple[int, float]]) -> None:
        """A finished seed's curve (from its MLflow run), for the later seeds' means."""
        self.seen[index].update(dict(history))

    def step(self, index: int, epoch: int, value: float) -> tuple[int, float]:
        """(step, value) to report for seed `index` at `epoch`: the mean over seeds 0..index at that epoch."""
        self.seen[index][epoch] = value
        if index == 0:
            return epoch, value
        values = [curve[epoch] for curve in self.seen[: index + 1] if epoch in curve]
        return index * self.epochs + epoch, statistics.fmean(values)


def objective(values: list[list[float]]) -> float | list[float]:
    """A trial's value: per objective, the mean of its seeds' values (one objective: a number)."""
    means = [statistics.fmean(column) for column in zip(*values)]
    return means[0] if len(means) == 1 else means
