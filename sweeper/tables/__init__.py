"""Tracked runs back into the report's table: find each cell's run, aggregate over seeds, render.

`runs.py` reads the store (MLflow's tables directly where it can), `build.py` turns runs into a
`Table` (`table.py`), `formats.py` draws it as markdown, CSV, LaTeX or HTML, `compare.py` plots
and reports across sweeps. No torch here: `sweeper table` stays fast.
"""

from sweeper.tables.build import TABLE_MD, build, out_of_tolerance
from sweeper.tables.formats import check, fmt_number, render
from sweeper.tables.summary import publish
from sweeper.tables.table import Table, Value, welch_p

__all__ = [
    "TABLE_MD",
    "Table",
    "Value",
    "build",
    "check",
    "fmt_number",
    "out_of_tolerance",
    "publish",
    "render",
    "welch_p",
]
