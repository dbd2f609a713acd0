"""The `table:` section of a spec: which columns identify a row, which metrics fill it, and how to print them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sweeper.schema.config import Strict

NumberFormat = Literal["percent", "loss", "params", "float", "int", "sci"]


class Column(Strict):
    """An identifying column: `label`, `row` (1-based number), a dotted config key or `metrics.KEY`."""

    key: str
    header: str
    format: NumberFormat | None = None
    # value -> text, e.g. {l1: "L1, {loss.penalty_weight:sci}"}; {dotted.key[:format]} fills in config values
    show: dict[str | bool | int | float, str] = Field(default_factory=dict)


class Metric(Strict):
    """A metric column: an MLflow metric key, its header and how to print it."""

    key: str
    header: str
    format: NumberFormat = "float"
    best: Literal["max", "min", "none"] | None = None
    mark: Literal["bold", "star"] = "bold"  # report 002 marks the best value with `*`

    def goal(self) -> str:
        """Which end is best: explicit, else from the format (losses low, the rest high)."""
        if self.best:
            return self.best
        return "min" if self.format == "loss" or "loss" in self.key else "max"


class TableSpec(Strict):
    """How `sweeper table` lays the report's table out."""

    columns: list[Column] = Field(default_factory=lambda: [Column(key="label", header="Configuration")])
    metrics: list[Metric] = Field(min_length=1)
    sort: str | None = None  # a metric key: rows best-first by it; default: spec order
    alpha: float = Field(0.05, gt=0.0, lt=0.5)  # level of the Welch test against the best row
    # The least deviation from a row's `reported` value still counted as reproduced, in the metric's
    # printed units (points for percent): one number for every metric, or per metric key. See `floor`.
    tolerance: float | dict[str, float] | None = None

    @model_validator(mode="after")
    def _sort_names_a_metric(self) -> TableSpec:
        keys = [m.key for m in self.metrics]
        if self.sort is not None and self.sort not in keys:
            raise ValueError(f"table.sort '{self.sort}' is not one of the table's metrics ({', '.join(keys)})")
        tol = self.tolerance
        unknown = sorted(set(tol) - set(keys)) if isinstance(tol, dict) else []
        if unknown:
            raise ValueError(
                f"table.tolerance names {', '.join(unknown)}, not among the table's metrics ({', '.join(keys)})"
            )
        if any(v < 0 for v in (tol.values() if isinstance(tol, dict) else [tol] if tol is not None else [])):
            raise ValueError("table.tolerance must not be negative")
        return self

    def floor(self, metric: Metric, reported: float) -> float:
        """The tolerance floor for a metric, printed units: the spec's, else 1 point for a percent
        metric and 5% of the reported value for any other (a report prints one run; seeds vary)."""
        tol = self.tolerance
        given = tol.get(metric.key) if isinstance(tol, dict) else tol
        if given is not None:
            return given
        return 1.0 if metric.format == "percent" else 0.05 * abs(reported)
