"""The pores table of the workflow: one row per instance method (instance-unet, the Otsu +
connected-components floor) with its counting and sizing scores, as CSV and HTML
(``<results>/<dataset>/summary/pores.csv`` / ``pores.html``, workflow/rules/instances.smk)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.stores.atomic import write_text_atomic
from dlpipe.stores.html import cell, html_table, write_html_tables

__all__ = ["COLUMNS", "instance_rows", "write_instance_summary"]

COLUMNS = [
    "method",
    "f1",
    "pq",
    "sq",
    "rq",
    "ap50",
    "ap",
    "count_error_signed",
    "size_w1",
    "mean_diameter_pred",
    "mean_diameter_true",
    "n_true",
    "n_pred",
    "n_matched",
    "z_ranges",
]


def instance_rows(metrics: Mapping[str, str | Path]) -> list[dict[str, Any]]:
    """One row per ``{method: metrics.json}`` of ``dlpipe evaluate --instances``."""
    rows = []
    for method, path in metrics.items():
        try:
            result = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read instance metrics ({exc})", path=path) from None
        o = result.get("overall") or {}
        row: dict[str, Any] = {"method": method}
        for k in COLUMNS[1:]:
            row[k] = result.get(k) if k == "z_ranges" else o.get(k)
        rows.append(row)
    return rows


def _csv_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return " ".join("-".join(str(x) for x in r) if isinstance(r, list) else str(r) for r in v)
    return str(v)


def write_instance_summary(
    metrics: Mapping[str, str | Path], out_csv: str | Path, out_html: str | Path
) -> list[dict[str, Any]]:
    """Write the pores table (CSV and an HTML page for the report); return its rows."""
    rows = instance_rows(metrics)
    lines = [",".join(COLUMNS)] + [",".join(_csv_cell(r[c]) for c in COLUMNS) for r in rows]
    write_text_atomic(Path(out_csv), "\n".join(lines) + "\n", overwrite=True)
    shown = [
        {c: cell(r[c]) if c != "count_error_signed" else _pct(r[c]) for c in COLUMNS} for r in rows
    ]
    write_html_tables(
        out_html,
        [("Pores as instances: counts and sizes on the test slab", html_table(shown, COLUMNS))],
        "pores",
        overwrite=True,
    )
    return rows


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * float(v):+.1f} %"
