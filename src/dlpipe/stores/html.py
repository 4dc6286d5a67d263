"""Small self-contained HTML tables: what the Snakemake report shows in the page.

``snakemake --report`` renders ``text/html`` items inline and offers every other file
(CSV, JSON) as a download, so each table meant to be read in the report is also written
as HTML: the summary (``models.html``), the per-class metrics (``<metrics>.html``) and the
model cards (``cards.html``, keys against models).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlpipe.stores.atomic import write_text_atomic

__all__ = ["cell", "flatten", "html_table", "write_html_tables"]

_STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:8px}"
    "table{border-collapse:collapse;margin-bottom:16px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f0f0f0}td.k,th.k{text-align:left}h3{margin:8px 0 4px}"
)


def cell(value: Any) -> str:
    """A value as table text: floats to 3 digits, NaN/None as ``n/a``, lists joined.

    >>> cell(0.7586957206546844), cell(float("nan")), cell([64, 128]), cell(12)
    ('0.759', 'n/a', '64, 128', '12')
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``architecture.depth``)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML ``<table>`` of ``rows`` (one mapping each); the first column left-aligned."""
    if columns is None:
        columns = []
        for row in rows:
            columns += [c for c in row if c not in columns]
    esc = html.escape

    def tr(cells: Sequence[str], tag: str) -> str:
        return (
            "<tr>"
            + "".join(
                f"<{tag}{' class=k' if i == 0 else ''}>{esc(c)}</{tag}>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )

    body = [tr([str(c) for c in columns], "th")]
    body += [tr([cell(row.get(c)) for c in columns], "td") for row in rows]
    return "<table>\n" + "\n".join(body) + "\n</table>"


def write_html_tables(
    path: str | Path, tables: Sequence[tuple[str, str]], title: str, *, overwrite: bool = False
) -> Path:
    """Write a page of ``(heading, table_html)`` sections to ``path`` (atomically; an existing
    page is replaced only with ``overwrite``)."""
    parts = [
        "<!DOCTYPE html>",
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
    ]
    for heading, table in tables:
        if heading:
            parts.append(f"<h3>{html.escape(heading)}</h3>")
        parts.append(table)
    parts.append("</body></html>\n")
    path = Path(path)
    write_text_atomic(path, "\n".join(parts), overwrite=overwrite)
    return path
