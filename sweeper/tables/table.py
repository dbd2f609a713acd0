"""The table as data: one Value per (row, metric) over seeds, the Table of them, and Welch's test.

Built by `build.py` from tracked runs and drawn as text by `formats.py`; both import this module.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from sweeper.schema.table import Metric

# Severity order of a row's cell states, for the one word shown when no seed has a value.
STATES = ("running", "failed", "pruned", "interrupted", "n/a", "missing")


@dataclass
class Value:
    """One metric of one row: the values over seeds, and how many seeds were expected."""

    values: list[float]
    expected: int
    status: str = "ok"  # ok, or when no seed has a value: running | failed | pruned | interrupted | n/a | missing

    @property
    def mean(self) -> float:
        """Mean over seeds, NaN when none finished."""
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


@dataclass
class Table:
    """The table as data: identifying cells as text, metric cells as Values, rows in display order."""

    title: str
    headers: list[str]
    keys: list[list[str]]
    metrics: list[Metric]
    values: list[list[Value]]
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    run_ids: list[list[str]] = field(default_factory=list)  # finished runs standing for each row's seeds
    name: str = ""
    profile: str | None = None
    parent_run: str | None = None
    alpha: float = 0.05
    source: str = ""
    # per row and metric: the value the report printed (logged units) or None, and the tolerance floor
    reported: list[list[float | None]] = field(default_factory=list)
    floors: list[list[float]] = field(default_factory=list)
    reported_mode: str = "inline"  # off | column | inline: how renderers show reported values
    # per row: the (dataset, digest, train size) of each finished run standing for a seed
    datasets: list[list[tuple[str, str, str]]] = field(default_factory=list)
    logged: str | None = None  # the parent run's Description as found (None: none yet): refresh only on change
    settings: dict[str, str] = field(default_factory=dict)  # config values every row shares, dotted
    smoke: bool = False  # a smoke profile's table: the report's values beside ours, no verdict
    full_cost: str = ""  # what the spec's full profile costs, as `sweeper list` estimates it
    parent_artifacts: str = ""  # the parent run's artifact URI, where table.md is logged

    def best(self, column: int) -> int | None:
        """Row index of the best mean in a metric column, by the metric's goal."""
        goal, best, best_mean = self.metrics[column].goal(), None, math.nan
        if goal == "none":
            return None
        for i, row in enumerate(self.values):
            mean = row[column].mean  # ties go to the first row shown
            if not math.isnan(mean) and (best is None or (mean > best_mean if goal == "max" else mean < best_mean)):
                best, best_mean = i, mean
        return best

    def pvalues(self, column: int) -> list[float | None]:
        """Two-sided Welch's t-test p of each row against the best row; None where it cannot be tested."""
        best = self.best(column)
        if best is None:
            return [None] * len(self.values)
        ref = self.values[best][column]
        return [None if i == best else welch_p(ref.values, row[column].values) for i, row in enumerate(self.values)]

    def ties(self, column: int) -> list[bool]:
        """Rows not significantly different from the best at level alpha (the best row itself excluded)."""
        return [p is not None and p >= self.alpha for p in self.pvalues(column)]


def welch_p(a: list[float], b: list[float]) -> float | None:
    """p of Welch's two-sided t-test of equal means; None with fewer than two values on a side.

    The same number as scipy.stats.ttest_ind(a, b, equal_var=False).pvalue (the tests check it),
    computed from scipy.special's t distribution: importing scipy.stats costs `sweeper table` ~1 s.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.special import stdtr  # only tables with two seeds a side pay for scipy (~0.3 s)

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:  # no spread at all: equal means are the same, others differ
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    return float(2 * stdtr(df, -abs(t)))
