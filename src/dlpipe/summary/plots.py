"""Plots of a sweep: per-phase Jaccard against parameters and against annotated slices."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlpipe.stores.atomic import atomic_path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _classes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [
            k.removeprefix("jaccard_")
            for k in row
            if k.startswith("jaccard_") and k.removeprefix("jaccard_") not in names
        ]
    return names


def _value(v: Any) -> float:
    return float("nan") if v is None or v == "" else float(v)


def _axes(n: int, title: str) -> tuple[Any, list[Any]]:
    plt = _plt()
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.6, 3.4), squeeze=False, sharey=True)
    fig.suptitle(title)
    return fig, list(axes[0])


def _group(row: Mapping[str, Any], *leave_out: str) -> str:
    """The model's settings other than ``leave_out``, as a label."""
    keys = ("input", "base_filters", "depth", "loss", "annotated_slices")
    parts = {
        "input": "{}",
        "base_filters": "f{}",
        "depth": "d{}",
        "loss": "{}",
        "annotated_slices": "s{}",
    }
    return "-".join(parts[k].format(row.get(k)) for k in keys if k != leave_out)


def jaccard_vs_parameters(rows: Sequence[Mapping[str, Any]]) -> Any:
    """One panel per phase: Jaccard of each model against its number of parameters (log x);
    models differing only in their parameters (filters, depth) share a colour."""
    classes = _classes(rows)
    fig, axes = _axes(max(len(classes), 1), "Jaccard (test slab) vs number of parameters")
    arch = ("base_filters", "depth")
    groups = sorted({_group(r, *arch) for r in rows})
    colour = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    for ax, cls in zip(axes, classes, strict=False):
        for row in rows:
            y = _value(row.get(f"jaccard_{cls}"))
            if math.isnan(y) or not row.get("parameters"):
                continue
            ax.plot(float(row["parameters"]), y, "o", color=colour[_group(row, *arch)])
            ax.annotate(
                str(row["model"]),
                (float(row["parameters"]), y),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(cls)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Jaccard")
    fig.tight_layout()
    return fig


def learning_curve(rows: Sequence[Mapping[str, Any]]) -> Any:
    """One panel per phase: Jaccard against the number of annotated training slices, one
    line per group of models that differ only in that number."""
    classes = _classes(rows)
    fig, axes = _axes(
        max(len(classes), 1), "Learning curve: Jaccard (test slab) vs annotated training slices"
    )
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_group(row, "annotated_slices"), []).append(row)
    for ax, cls in zip(axes, classes, strict=False):
        for i, (label, members) in enumerate(sorted(groups.items())):
            pts = sorted(
                (int(r["annotated_slices"]), _value(r.get(f"jaccard_{cls}")))
                for r in members
                if r.get("annotated_slices") not in (None, "")
            )
            if pts:
                ax.plot(
                    [p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i % 10}", label=label
                )
        ax.set_xlabel("annotated training slices")
        ax.set_title(cls)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Jaccard")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def save(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` as PNG at ``path`` (atomically) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)
