"""How a table compares with the numbers its report printed: deltas, tolerances, and a verdict.

A row's `reported:` values (spec.py) sit beside our mean over seeds. A row is *within tolerance*
when |ours - reported| <= max(floor, 2 × the std over our seeds), in printed units (points for a
percent metric); the floor is `table.tolerance`, else TableSpec.floor's default. Only rows with a
reported value and every seed finished are judged: a partial row is shown, not counted, and a row
without a reported value is neither agreeing nor disagreeing. Data only; formats.py draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sweeper.schema.table import Metric
from sweeper.tables.table import Table, Value

SCALE = {"percent": 100.0}  # a metric's printed units: the table shows percent as 0-100
MODES = ("off", "column", "inline")


def scale(metric: Metric) -> float:
    """Factor from a metric's logged value to its printed units."""
    return SCALE.get(metric.format, 1.0)


@dataclass
class Verdict:
    """One metric's agreement with the report, over the rows that have a reported value."""

    metric: Metric
    judged: list[int] = field(default_factory=list)  # rows with a reported value and every seed finished
    outside: list[int] = field(default_factory=list)  # judged rows out of tolerance
    partial: list[int] = field(default_factory=list)  # reported, some seeds finished: shown, not judged
    unrun: list[int] = field(default_factory=list)  # reported, no finished seed
    unreported: list[int] = field(default_factory=list)  # rows the report gives no value for
    delta: dict[int, float] = field(default_factory=dict)  # ours - reported, printed units, rows with a mean
    tolerance: dict[int, float] = field(default_factory=dict)
    tau: float = math.nan  # Kendall's tau-b of our means against the reported values, judged rows
    report_best: int | None = None  # the row the report ranks best (among rows it gives a value for)
    best_agrees: bool | None = None  # whether it is our best judged row too; None while it is not judged

    @property
    def within(self) -> int:
        """How many judged rows are within tolerance."""
        return len(self.judged) - len(self.outside)

    def largest(self) -> tuple[int, float] | None:
        """The judged row deviating most from the report, and by how much (printed units)."""
        if not self.judged:
            return None
        row = max(self.judged, key=lambda i: abs(self.delta[i]))
        return row, self.delta[row]


def verdict(metric: Metric, values: list[Value], reported: list[float | None], floors: list[float]) -> Verdict:
    """Compare one metric column with the report; floors[i] is row i's tolerance floor (printed units)."""
    out, k = Verdict(metric), scale(metric)
    for i, (value, rep) in enumerate(zip(values, reported)):
        if rep is None:
            out.unreported.append(i)
            continue
        if not value.values:
            out.unrun.append(i)
            continue
        out.delta[i] = (value.mean - rep) * k
        out.tolerance[i] = max(floors[i], 2 * value.std * k)
        if len(value.values) < value.expected:
            out.partial.append(i)
            continue
        out.judged.append(i)
        if abs(out.delta[i]) > out.tolerance[i] + 1e-9:  # printed numbers are rounded: no float dust
            out.outside.append(i)
    sign = -1.0 if metric.goal() == "min" else 1.0
    given = [i for i, rep in enumerate(reported) if rep is not None]
    if given and metric.goal() != "none":
        out.report_best = max(given, key=lambda i: sign * (reported[i] or 0.0))
        if out.report_best in out.judged:
            ours = max(out.judged, key=lambda i: sign * values[i].mean)
            out.best_agrees = values[ours].mean == values[out.report_best].mean
    out.tau = kendall_tau([values[i].mean for i in out.judged], [reported[i] or 0.0 for i in out.judged])
    return out


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties corrected, as scipy.stats.kendalltau's default); NaN when undefined.

    O(n²) over a table's handful of rows; computed here, since importing scipy.stats costs `sweeper table` ~1 s.
    """
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue  # tied in both: counted in neither (tau-b)
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


def verdicts(table: Table) -> list[Verdict]:
    """One verdict per metric column that has a reported value in some row."""
    out = []
    for col, metric in enumerate(table.metrics):
        reported = [row[col] for row in table.reported] if table.reported else []
        if any(r is not None for r in reported):
            values = [row[col] for row in table.values]
            out.append(verdict(metric, values, reported, [row[col] for row in table.floors]))
    return out


def signed(delta: float, metric: Metric) -> str:
    """A deviation in printed units with its sign: +1.75 points, +0.0123 in a loss."""
    return (
        f"{delta:+.4f}"
        if metric.format == "loss"
        else f"{delta:+.2f}"
        if metric.format == "percent"
        else f"{delta:+.4g}"
    )


def describe(v: Verdict, names: list[str]) -> str:
    """The verdict as one note under the table; names[i] is how a reader finds row i."""
    head = f"Against the report ({v.metric.header}): "
    if not v.judged:
        text = head + "no row with a reported value has all its seeds finished yet"
    else:
        text = head + f"{v.within} of {len(v.judged)} rows within tolerance (max(floor, 2 × std over seeds))"
        if v.outside:
            text += "; outside: " + ", ".join(
                f"{names[i]} ({signed(v.delta[i], v.metric)}, tolerance {signed(v.tolerance[i], v.metric)[1:]})"
                for i in v.outside
            )
        text += "; " + ranking(v, names)
    if v.report_best is not None and v.best_agrees is None:
        text += f"; the report's best row, {names[v.report_best]}, is not finished yet"
    for rows, what in ((v.partial, "partial, not judged"), (v.unrun, "not run"), (v.unreported, "no reported value")):
        if rows:
            text += f"; {what}: " + ", ".join(names[i] for i in rows)
    return text + "."


def ranking(v: Verdict, names: list[str]) -> str:
    """Kendall's tau and whether the report's best row is ours."""
    tau = "undefined" if math.isnan(v.tau) else f"{v.tau:.2f}"
    text = f"ranking: Kendall's τ = {tau} over {len(v.judged)} rows"
    if v.best_agrees is not None and v.report_best is not None:
        text += f"; the report's best row, {names[v.report_best]}, is {'ours too' if v.best_agrees else 'not ours'}"
    return text
