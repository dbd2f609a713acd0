"""User text (labels, headers, notes) as data in each output format: never markup, one line per cell.

A row label such as `<script>alert(1)</script>`, `A | B` or one with a newline must show as the
text it is wherever a table is rendered: in a markdown file, in the MLflow run description (rendered
markdown), in an HTML page and in a LaTeX document. CSV needs nothing here: the csv module quotes.
"""

from __future__ import annotations

import html
import re

DAGGER = "†"
_NEWLINES = re.compile(r"\r\n|\r|\n")

# Markdown's inline markup in user text: emphasis, code, links and the backslash itself.
_MD_MARKUP = re.compile(r"([\\`*_\[\]])")


def _no_html(text: str) -> str:
    """& and < as entities: no tag or entity can start; a lone > stays readable in the raw text (as in '->')."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def markdown_cell(text: str, markup: bool = True) -> str:
    """Text safe in one markdown table cell: no HTML, `|` escaped, newlines as <br>.

    markup=True also escapes emphasis, code and link characters (for user text such as labels and
    headers); our own value text keeps its `*` best mark as it always printed.
    """
    text = _no_html(text)
    if markup:
        text = _MD_MARKUP.sub(r"\\\1", text)
    return _NEWLINES.sub("<br>", text.replace("|", "\\|"))


def markdown_line(text: str) -> str:
    """A note under a markdown table: no HTML, on one line (a newline would end the paragraph)."""
    return _NEWLINES.sub(" ", _no_html(text))


def html_text(text: str) -> str:
    """Text safe inside an HTML element, newlines as <br>."""
    return _NEWLINES.sub("<br>", html.escape(text))


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",  # bare < and > print as ¡ and ¿ in LaTeX's default font encoding
    ">": r"\textgreater{}",
    "|": r"\textbar{}",  # and | as an em dash
    "±": r"$\pm$",
    DAGGER: r"$^\dagger$",
    "≥": r"$\geq$",
    "–": "--",
}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell, on one line, with ±, † and ≥ as math symbols."""
    return "".join(_LATEX.get(ch, ch) for ch in _NEWLINES.sub(" ", text))
