"""A search's table: best trial first, and pruned trials with the value they were stopped at.

A search's rows are its trials (runs.trial_cells). Unless the spec sorts the table itself, finished
trials come first, best objective first, then pruned trials by the value the pruner last saw, then
the rest in trial order. A pruned trial's cells read `pruned at epoch E (val_acc 45.12)`: the epoch
it stopped at and the value it reported there (its MLflow run's last value of the watched metric).
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any

from sweeper.schema.spec import Spec
from sweeper.tables.formats import fmt_number
from sweeper.tables.runs import Pick
from sweeper.tables.table import Table
from sweeper.vocab import Tag

_EPOCH = re.compile(r"epoch (\d+)")


def order(spec: Spec, rows: list[list[Pick]], collect: Any) -> list[list[Pick]]:
    """Trials best first by the (first) objective; pruned by their last reported value; the rest in trial order."""
    assert spec.search is not None
    objective = spec.search.objective
    sign = -1.0 if objective.direction == "maximize" else 1.0

    def key(row: list[Pick]) -> tuple[int, float]:
        mean = collect(objective.metric, row).mean
        if not math.isnan(mean) and not any(p.state == "pruned" for p in row):  # a pruned group's seeds: partial
            return 0, sign * mean
        last = stopped(row, objective.epoch_metric())
        return (1, sign * last[1]) if last is not None else (2, 0.0)

    return sorted(rows, key=key)  # stable: ties and the rest keep trial order


def stopped(row: list[Pick], watch: str) -> tuple[int, float] | None:
    """(epoch, mean value of the watched metric) where a row's pruned runs stopped; None when none was pruned."""
    runs = [p.run for p in row if p.state == "pruned" and p.run is not None]
    values = [r.data.metrics[watch] for r in runs if watch in r.data.metrics]
    if not values:
        return None
    epochs = [int(m.group(1)) for r in runs if (m := _EPOCH.search(r.data.tags.get(Tag.PRUNED, "")))]
    return (max(epochs) if epochs else 0), statistics.fmean(values)


def mark_pruned(table: Table, spec: Spec, rows: list[list[Pick]]) -> None:
    """Pruned trials' cells say at which epoch they stopped and what the pruner last saw there."""
    if spec.search is None:
        return
    watch = spec.search.objective.epoch_metric()
    unit = "percent" if "acc" in watch else "loss"
    for values, row in zip(table.values, rows):
        last = stopped(row, watch)
        if last is None:
            continue
        for value in values:
            if not value.values and value.status == "pruned":
                value.status = f"pruned at epoch {last[0]} ({watch} {fmt_number(last[1], unit)})"
