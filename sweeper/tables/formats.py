"""A Table as text: number formats, best/significance marks, and markdown, CSV, LaTeX and HTML."""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweeper.catalogue import TABLE_FORMATS
from sweeper.errors import UserError
from sweeper.schema.table import Column, Metric
from sweeper.tables.escape import DAGGER, html_text, latex_escape, markdown_cell, markdown_line
from sweeper.tables.reported import scale, signed
from sweeper.tables.table import Table, Value


def fmt_number(value: float, fmt: str) -> str:
    """One number in a format: percent (2 decimals), loss (4), params (11.17M), int, sci (1e-3), float."""
    if math.isnan(value):
        return "–"
    if fmt == "percent":
        return f"{100 * value:.2f}"
    if fmt == "loss":
        return f"{value:.4f}"
    if fmt == "params":
        return f"{value / 1e6:.2f}M"
    if fmt == "int":
        return f"{value:.0f}"
    if fmt == "sci":
        if value == 0:
            return "0"
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:.4g}"


def fmt_value(value: Value, fmt: str) -> str:
    """A cell as text: 'mean ± std', '(n=2/3)' when seeds are missing, or the state when none finished."""
    if not value.values:
        return value.status
    text = fmt_number(value.mean, fmt)
    if len(value.values) > 1:
        text += " ± " + fmt_number(value.std, fmt if fmt != "params" else "float")
    if len(value.values) < value.expected:
        text += f" (n={len(value.values)}/{value.expected})"
    return text


def key_text(column: Column, flat: dict[str, Any], value: Value | None = None) -> str:
    """An identifying cell: a `metrics.KEY` value, else the config value through the column's `show` and format."""
    if value is not None:
        return fmt_number(value.mean, column.format or "float") if value.values else "–"
    if column.key not in flat:
        return "–"  # a key only some rows have, e.g. model.growth_rate beside ResNet rows
    raw = flat[column.key]
    shown = {_norm(k): text for k, text in column.show.items()}
    if _norm(raw) in shown:
        return _fill(shown[_norm(raw)], flat)
    return _display(raw, column.format)


def _norm(value: Any) -> str:
    """The lookup form of a value in `show`: YAML's `true`, `none` and `1.0e-3` keys match config values."""
    return str(value).lower() if isinstance(value, bool) or value is None else _display(value, None)


def _display(value: Any, fmt: str | None) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and fmt:
        return fmt_number(float(value), fmt)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fill(template: str, flat: dict[str, Any]) -> str:
    """Fill `{dotted.key}` or `{dotted.key:format}` placeholders of a `show` text from the config."""

    def one(match: re.Match) -> str:
        key, fmt = match.group(1), match.group(2)
        return _display(flat[key], fmt) if key in flat else match.group(0)

    return re.sub(r"\{([A-Za-z_][\w.]*)(?::(\w+))?\}", one, template)


def _reported_columns(table: Table) -> list[int]:
    """Metric columns with a reported value in some row (only these get a reported text or column)."""
    if table.reported_mode == "off" or not table.reported:
        return []
    return [c for c in range(len(table.metrics)) if any(rep[c] is not None for rep in table.reported)]


def headers(table: Table) -> list[str]:
    """The header line: the table's, plus a 'reported' column after each metric that has one (column mode)."""
    if table.reported_mode != "column":
        return table.headers
    n_keys, shown = len(table.headers) - len(table.metrics), _reported_columns(table)
    out = table.headers[:n_keys]
    for col, header in enumerate(table.headers[n_keys:]):
        out += [header, f"{header}, reported"] if col in shown else [header]
    return out


def reported_text(value: Value, reported: float | None, metric: Metric, inline: bool) -> str:
    """'rep. 82.35, +1.75' (inline) or '82.35 (+1.75)' (column): the report's value and our deviation from it."""
    if reported is None:
        return "" if inline else "–"
    rep = fmt_number(reported, metric.format)  # as the table prints ours: 0.8235 as 82.35
    delta = signed((value.mean - reported) * scale(metric), metric) if value.values else ""
    if inline:
        return f" (rep. {rep}" + (f", {delta})" if delta else ")")
    return rep + (f" ({delta})" if delta else "")


def marked_cells(table: Table) -> list[list[tuple[str, bool]]]:
    """Every cell as (text, bold): best values bold or starred as the metric says, ties with a dagger,
    and the report's value (inline, or in its own column) where the row has one."""
    rows = [[(k, False) for k in keys] for keys in table.keys]
    shown = _reported_columns(table)
    for col, metric in enumerate(table.metrics):
        best, ties = table.best(col), table.ties(col)
        top = table.values[best][col].mean if best is not None else math.nan
        for i, row in enumerate(table.values):
            is_best = row[col].mean == top  # every row of an exact tie is a best value
            text = fmt_value(row[col], metric.format) + ("*" if is_best and metric.mark == "star" else "")
            if ties[i] and not is_best:
                text += " " + DAGGER
            rep = table.reported[i][col] if col in shown else None
            if table.reported_mode == "inline":
                text += reported_text(row[col], rep, metric, inline=True)
            rows[i].append((text, is_best and metric.mark == "bold"))
            if table.reported_mode == "column" and col in shown:
                rows[i].append((reported_text(row[col], rep, metric, inline=False), False))
    return rows


def render(table: Table, fmt: str = "markdown") -> str:
    """The table as markdown (with notes), csv (cells only), latex (booktabs) or html."""
    if fmt not in RENDERERS:
        raise UserError(TABLE_FORMATS.unknown(fmt))
    return RENDERERS[fmt](table)


def _markdown(table: Table) -> str:
    n_keys, head = len(table.headers) - len(table.metrics), headers(table)

    def cell(i: int, text: str, bold: bool) -> str:
        text = markdown_cell(text, markup=i < n_keys)  # labels and config values are the user's text
        return f"**{text}**" if bold else text

    lines = [
        "| " + " | ".join(markdown_cell(h) for h in head) + " |",
        "|" + "|".join("---" if i < n_keys else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(cell(i, *c) for i, c in enumerate(row)) + " |" for row in marked_cells(table)]
    return "\n".join(lines) + "\n\n" + "\n".join(markdown_line(n) for n in table.notes) + "\n"


def _csv(table: Table) -> str:
    out = io.StringIO()
    rows = [[text for text, _ in row] for row in marked_cells(table)]
    csv.writer(out, lineterminator="\n").writerows([headers(table), *rows])
    return out.getvalue()


def _latex(table: Table) -> str:
    n_keys = len(table.headers) - len(table.metrics)
    spec = "l" * n_keys + "r" * (len(headers(table)) - n_keys)
    body = [
        " & ".join(r"\textbf{" + latex_escape(t) + "}" if b else latex_escape(t) for t, b in row) + r" \\"
        for row in marked_cells(table)
    ]
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{table}[htbp]",
        r"  \centering",
        r"  \caption{" + latex_escape(table.title) + "}",
        r"  \begin{tabular}{" + spec + "}",
        r"    \toprule",
        "    " + " & ".join(latex_escape(h) for h in headers(table)) + r" \\",
        r"    \midrule",
        *("    " + line for line in body),
        r"    \bottomrule",
        r"  \end{tabular}",
        *(r"  \par\smallskip{\footnotesize " + latex_escape(n) + "}" for n in table.notes),
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _html(table: Table) -> str:
    n_keys = len(table.headers) - len(table.metrics)

    def td(i: int, text: str, bold: bool) -> str:
        style = ' style="text-align:right"' if i >= n_keys else ""
        inner = f"<strong>{html_text(text)}</strong>" if bold else html_text(text)
        return f"<td{style}>{inner}</td>"

    head = "".join(f"<th>{html_text(h)}</th>" for h in headers(table))
    rows = ["<tr>" + "".join(td(i, t, b) for i, (t, b) in enumerate(row)) + "</tr>" for row in marked_cells(table)]
    lines = [
        "<table>",
        f"<caption>{html_text(table.title)}</caption>",
        f"<thead><tr>{head}</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        *(f"<p>{html_text(n)}</p>" for n in table.notes),
    ]
    return "\n".join(lines) + "\n"


def canonical(line: str) -> str:
    """A markdown table line with cell padding and separator styles normalised."""
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
    if cells and all(re.fullmatch(r":?-+:?", c) for c in cells):
        cells = ["---"] * len(cells)
    return "| " + " | ".join(cells) + " |"


def find_markdown_table(text: str, want: list[str]) -> list[str] | None:
    """The table in a markdown text that starts with want's header line (the closest, if several)."""
    lines = [line.strip() for line in text.splitlines()]
    want = [canonical(w) for w in want]
    blocks = []
    for i, line in enumerate(lines):
        if line.startswith("|") and canonical(line) == want[0]:
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            blocks.append([canonical(x) for x in lines[i:end]])
    if not blocks:
        return None
    return max(blocks, key=lambda b: difflib.SequenceMatcher(None, b, want).ratio())


def check(table: Table, path: Path) -> tuple[bool, str]:
    """Whether a markdown file holds this table as the runs give it now, and the diff if not."""
    if not path.is_file():
        raise UserError(f"{path}: no such file to check the table '{table.name}' against.")
    want = [canonical(line) for line in render(table, "markdown").splitlines() if line.startswith("|")]
    found = find_markdown_table(path.read_text(), want)
    if found is None:
        return False, f"{path}: no table with the header line `{want[0]}`.\n"
    if found == want:
        return True, ""
    diff = difflib.unified_diff(found, want, fromfile=str(path), tofile=f"runs of {table.name}", lineterm="")
    return False, "\n".join(diff) + "\n"


# catalogue.TABLE_FORMATS, each by its renderer (tests/test_catalogue.py holds the two to each other)
RENDERERS: dict[str, Callable[[Table], str]] = {"markdown": _markdown, "csv": _csv, "latex": _latex, "html": _html}
