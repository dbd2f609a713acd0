"""The table's numbers as plain records, for pandas and `sweeper table -f csv --raw`: one record per row.

Values are in the units MLflow logged (0.9312, not 93.12 %); nothing is rounded or marked up, so a
notebook computes with what the markdown table shows. Per metric KEY a record holds KEY.mean,
KEY.std, KEY.n (finished seeds), KEY.expected, KEY.values (one per finished seed), KEY.status,
KEY.reported, KEY.delta (mean - reported), KEY.p (Welch's test against the column's best),
KEY.best and KEY.tie (not significantly different from the best).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from sweeper.tables.table import Table

# Per metric, in this order: the record's columns are predictable whatever the spec's metrics are.
FIELDS = ("mean", "std", "n", "expected", "values", "status", "reported", "delta", "p", "best", "tie")


def records(table: Table) -> list[dict[str, Any]]:
    """One dict per table row, in the table's order: label, the identifying columns as shown, then FIELDS per metric."""
    out: list[dict[str, Any]] = []
    columns = [_metric_columns(table, col) for col in range(len(table.metrics))]
    for i, key_cells in enumerate(table.keys):
        record: dict[str, Any] = {"label": table.labels[i] if i < len(table.labels) else ""}
        record |= dict(zip(table.headers, key_cells))
        for col, metric in enumerate(table.metrics):
            record |= {f"{metric.key}.{name}": value for name, value in columns[col][i].items()}
        record["run_ids"] = list(table.run_ids[i]) if i < len(table.run_ids) else []
        out.append(record)
    return out


def _metric_columns(table: Table, col: int) -> list[dict[str, Any]]:
    """FIELDS of one metric column, row by row."""
    best, pvalues, ties = table.best(col), table.pvalues(col), table.ties(col)
    rows = []
    for i, row in enumerate(table.values):
        value = row[col]
        reported = table.reported[i][col] if i < len(table.reported) else None
        mean = value.mean
        rows.append(
            {
                "mean": mean,
                "std": value.std if value.values else math.nan,
                "n": len(value.values),
                "expected": value.expected,
                "values": list(value.values),
                "status": value.status,
                "reported": reported,
                "delta": mean - reported if reported is not None and not math.isnan(mean) else None,
                "p": pvalues[i],
                "best": i == best,
                "tie": ties[i],
            }
        )
    return rows


def raw_csv(table: Table) -> str:
    """records() as CSV: full-precision numbers, a seed list as 'a;b;c', empty for None."""
    rows = records(table)
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for record in rows:
        writer.writerow({k: _cell(v) for k, v in record.items()})
    return buffer.getvalue()


def _cell(value: Any) -> str:
    """One CSV cell: repr-exact floats, lists joined by ';', None and NaN empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, list):
        return ";".join(_cell(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)
