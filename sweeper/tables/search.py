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
    """Trials best first by the (first) objective, the Pareto front first when there are several; pruned by
    their last reported value; the rest in trial order."""
    assert spec.search is not None
    objective = spec.search.primary()
    sign = -1.0 if objective.direction == "maximize" else 1.0
    on_front = {id(row) for row in front(spec, rows, collect)}

    def key(row: list[Pick]) -> tuple[int, float]:
        mean = collect(objective.metric, row).mean
        if not math.isnan(mean) and not any(p.state == "pruned" for p in row):  # a pruned group's seeds: partial
            return (0 if id(row) in on_front else 1), sign * mean
        last = stopped(row, objective.epoch_metric())
        return (2, sign * last[1]) if last is not None else (3, 0.0)

    return sorted(rows, key=key)  # stable: ties and the rest keep trial order


def front(spec: Spec, rows: list[list[Pick]], collect: Any) -> list[list[Pick]]:
    """The rows no other row dominates on every objective (means over seeds); empty with one objective."""
    assert spec.search is not None
    objectives = spec.search.objectives()
    if len(objectives) < 2:
        return []
    signs = [1.0 if o.direction == "maximize" else -1.0 for o in objectives]
    scored = []
    for row in rows:
        means = [s * collect(o.metric, row).mean for s, o in zip(signs, objectives)]
        if not any(math.isnan(m) for m in means) and not any(p.state == "pruned" for p in row):
            scored.append((row, means))

    def dominated(a: list[float]) -> bool:
        return any(all(x >= y for x, y in zip(b, a)) and b != a for _, b in scored)

    return [row for row, means in scored if not dominated(means)]


def mark_front(table: Table, spec: Spec, rows: list[list[Pick]], collect: Any) -> None:
    """With several objectives: ◆ before the first identifying cell of each Pareto-front row, and a note."""
    if spec.search is None or len(spec.search.objectives()) < 2:
        return
    on_front = {id(row) for row in front(spec, rows, collect)}
    for keys, row in zip(table.keys, rows):
        if id(row) in on_front and keys:
            keys[0] = f"◆ {keys[0]}"
    goals = ", ".join(f"{o.metric} {'up' if o.direction == 'maximize' else 'down'}" for o in spec.search.objectives())
    table.notes.append(f"◆ the Pareto front ({goals}): no other trial is at least as good on every objective.")


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
    watch = spec.search.primary().epoch_metric()
    unit = "percent" if "acc" in watch else "loss"
    for values, row in zip(table.values, rows):
        last = stopped(row, watch)
        if last is None:
            continue
        for value in values:
            if not value.values and value.status == "pruned":
                value.status = f"pruned at epoch {last[0]} ({watch} {fmt_number(last[1], unit)})"
