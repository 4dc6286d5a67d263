"""The pores table of the workflow: one row per instance method (instance-unet, the Otsu +
connected-components floor) with its counting and sizing scores, as CSV and HTML
(``<results>/<dataset>/summary/pores.csv`` / ``pores.html``: ``dlpipe summary --instances
pores``, workflow/rules/instances.smk)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.results import StageResult, score
from dlpipe.stores.atomic import check_outputs, write_text_atomic
from dlpipe.stores.html import cell, html_table, write_html_tables

__all__ = ["COLUMNS", "instance_rows", "summarise_instances", "write_instance_summary"]

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


def summarise_instances(
    metrics: list[Path], out: str | Path, name: str, *, overwrite: bool = False
) -> StageResult:
    """The instance table of ``metrics`` (``dlpipe evaluate --instances`` JSONs, each method
    named after its folder): ``out/<name>.csv`` and ``out/<name>.html``.

    The result logs each method's F1, PQ and signed count error (``<method>.f1``, ...) and
    ends with the table's path and the method of the highest F1.
    """
    out = Path(out)
    methods = {Path(m).parent.name: Path(m) for m in metrics}
    if len(methods) != len(metrics):
        raise UserError("two instance metrics files in folders of the same name", path=out)
    csv, page = out / f"{name}.csv", out / f"{name}.html"
    check_outputs([csv, page], overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    rows = write_instance_summary(methods, csv, page)
    scored = [r for r in rows if isinstance(r["f1"], (int, float)) and not math.isnan(r["f1"])]
    lines = [f"{name}: {len(rows)} methods: {csv}"]
    if scored:
        best = max(scored, key=lambda r: r["f1"])
        lines.append(
            f"best F1@0.5: {best['method']} ({score(best['f1'])}, count error "
            f"{_pct(best['count_error_signed'])})"
        )
    return StageResult(
        {"rows": rows},
        metrics={
            f"{r['method']}.{k}": r[k]
            for r in rows
            for k in ("f1", "pq", "count_error_signed")
            if isinstance(r[k], (int, float))
        },
        artifacts=[csv, page],
        summary="\n".join(lines),
    )
