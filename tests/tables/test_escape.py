"""Labels are data: user text renders as the text it is in markdown, HTML, LaTeX and CSV.

Tables are built by hand (no store): the renderers are what is under test. The MLflow run
description, where the markdown is rendered by the UI, has its own test in tests/runs/test_summary.py.
"""

from __future__ import annotations

import csv
import io

from helpers import TableText
from markdown_it import MarkdownIt

from sweeper import tables
from sweeper.schema.table import Metric
from sweeper.tables import escape

EVIL = ["<script>alert(1)</script>", "A | B", "two\nlines", "50% & 1_000 {x} ~ ^ $ # \\ > <", '"quoted", *bold* `code`']


def evil_table() -> tables.Table:
    """Rows labelled with markup, a header with markup, and a note naming a row."""
    values = [[tables.Value([0.5 + i / 100], 1)] for i in range(len(EVIL))]
    return tables.Table(
        title="Evil <b>title</b>\nsecond line",
        headers=["Label | <i>", "Acc. (%)"],
        keys=[[label] for label in EVIL],
        metrics=[Metric(key="test_acc", header="Acc. (%)", format="percent")],
        values=values,
        labels=list(EVIL),
        notes=["Seeds without a result: <script>x</script> | row\nnext."],
    )


def md_rows(markdown: str) -> list[list[str]]:
    """The table cells as text after rendering, as a markdown viewer shows them (GFM tables, raw HTML on)."""
    rendered = MarkdownIt("commonmark").enable("table").render(markdown)
    assert "<script" not in rendered and "<b>" not in rendered and "<i>" not in rendered, rendered
    return TableText.of(rendered)


def test_markdown_labels_render_as_their_text_one_row_each():
    markdown = tables.render(evil_table(), "markdown")
    rows = md_rows(markdown)
    assert len(rows) == 1 + len(EVIL)  # a newline or a | in a label breaks no row
    assert rows[0] == ["Label | <i>", "Acc. (%)"]
    assert [r[0] for r in rows[1:]] == EVIL
    assert all(len(r) == 2 for r in rows)
    note = [line for line in markdown.splitlines() if line.startswith("Seeds")]
    assert note == ["Seeds without a result: &lt;script>x&lt;/script> | row next."]


def test_html_labels_are_text_and_newlines_are_line_breaks():
    page = tables.render(evil_table(), "html")
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    rows = TableText.of(page)
    assert rows[0] == ["Label | <i>", "Acc. (%)"]
    assert [r[0] for r in rows[1:]] == EVIL
    assert "<caption>Evil &lt;b&gt;title&lt;/b&gt;<br>second line</caption>" in page


def test_latex_escapes_every_special_character_and_keeps_rows_on_one_line():
    tex = tables.render(evil_table(), "latex")
    body = [line for line in tex.splitlines() if line.strip().endswith(r"\\")]
    assert len(body) == 1 + len(EVIL)  # the header and one line per row: no newline inside a row
    assert r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" in tex
    assert r"A \textbar{} B" in tex and "two lines" in tex
    assert (
        r"50\% \& 1\_000 \{x\} \textasciitilde{} \textasciicircum{} \$ \# \textbackslash{} \textgreater{} \textless{}"
        in tex
    )
    assert "<" not in tex and ">" not in tex


def test_csv_round_trips_every_label():
    text = tables.render(evil_table(), "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["Label | <i>", "Acc. (%)"]
    assert [r[0] for r in rows[1:]] == EVIL


def test_markdown_cell_leaves_our_best_mark_and_escapes_user_markup():
    assert escape.markdown_cell("87.20 ± 0.10*", markup=False) == "87.20 ± 0.10*"
    assert escape.markdown_cell("*a*_b_", markup=True) == r"\*a\*\_b\_"
