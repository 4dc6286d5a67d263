"""Plots of a sweep: per-phase Jaccard against parameters and against annotated slices.

Each plot has a panel for the mean Jaccard and one per phase. The baselines (rows of kind
``baseline``: no parameters, no settings) are dashed horizontal lines in every panel.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlpipe.stores.atomic import atomic_path
from dlpipe.summary.table import best_lines

__all__ = ["curve_groups", "jaccard_vs_parameters", "learning_curve", "save"]

_NAME_ORDER = ("base_filters", "depth", "loss", "input", "annotated_slices")
"""The settings in the order of the model names (f<filters>-d<depth>-<loss>-<input>-s<n>)."""
_FORMAT = {"base_filters": "f{}", "depth": "d{}", "loss": "{}", "input": "{}"}
_ARCH = ("base_filters", "depth")
_BASELINE_STYLE = (("k", "--"), ("tab:red", "-."), ("0.45", ":"), ("tab:brown", "--"))
_JITTER_DECADES = 0.04
"""Spread, in decades of the log x axis, between models of equal parameter counts."""
_MARKERS = "os^Dv<>p"
"""Marker of the 1st, 2nd, ... ten groups (colours repeat after ten)."""
_SAME_DECADES = 0.02
"""Parameter counts this close (in decades, 5 %) are one cluster (e.g. 2D and 2.5D input)."""


def _plt() -> Any:
    # matplotlib is heavy: imported only when a plot is drawn.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(title, column) of each panel: the mean Jaccard, then each phase."""
    names: list[str] = []
    for row in rows:
        names += [
            k.removeprefix("jaccard_")
            for k in row
            if k.startswith("jaccard_") and k.removeprefix("jaccard_") not in names
        ]
    return [("mean", "mean_jaccard"), *((n, f"jaccard_{n}") for n in names)]


def _value(v: Any) -> float:
    return float("nan") if v is None or v == "" else float(v)


def _is_baseline(row: Mapping[str, Any]) -> bool:
    return row.get("kind") == "baseline"


def _group(row: Mapping[str, Any], *leave_out: str) -> str:
    """The model's settings other than ``leave_out``, as a label in model-name order."""
    parts = []
    for k in _NAME_ORDER:
        if k in leave_out:
            continue
        v = row.get(k)
        if k == "annotated_slices":
            parts.append(f"s{'all' if v in (None, '') else v}")
        else:
            parts.append(_FORMAT[k].format(v))
    return "-".join(parts)


def curve_groups(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The lines of the learning curve: label (the settings but the number of annotated
    slices) -> its models, sorted by that number. Baselines and models without a number of
    slices are left out.

    >>> curve_groups([{"model": "b", "base_filters": 8, "depth": 3, "loss": "ce",
    ...                "input": "2d", "annotated_slices": 4},
    ...               {"model": "a", "base_filters": 8, "depth": 3, "loss": "ce",
    ...                "input": "2d", "annotated_slices": 2}])["f8-d3-ce-2d"][0]["model"]
    'a'
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if _is_baseline(row) or row.get("annotated_slices") in (None, ""):
            continue
        groups.setdefault(_group(row, "annotated_slices"), []).append(row)
    return {
        label: sorted(members, key=lambda r: (int(r["annotated_slices"]), str(r["model"])))
        for label, members in sorted(groups.items())
    }


def _style(i: int) -> tuple[str, str]:
    """Colour and marker of the i-th group."""
    return f"C{i % 10}", _MARKERS[i // 10 % len(_MARKERS)]


def _figure(rows: Sequence[Mapping[str, Any]], title: str) -> tuple[Any, list[Any]]:
    plt = _plt()
    n = len(_panels(rows))
    fig, axes = plt.subplots(
        1, n, figsize=(3.3 * n + 2.8, 3.9), squeeze=False, sharey=True, layout="constrained"
    )
    fig.suptitle(f"{title}\n{'   '.join(best_lines(rows))}", fontsize=10)
    return fig, list(axes[0])


def _baselines(ax: Any, rows: Sequence[Mapping[str, Any]], column: str) -> None:
    """Dashed horizontal line per baseline."""
    for i, row in enumerate(r for r in rows if _is_baseline(r)):
        y = _value(row.get(column))
        if math.isnan(y):
            continue
        colour, style = _BASELINE_STYLE[i % len(_BASELINE_STYLE)]
        slices = row.get("annotated_slices")
        extra = f", {slices} slices" if slices not in (None, "") else ""
        ax.axhline(y, color=colour, ls=style, lw=1.5, label=f"{row['model']} (baseline{extra})")


def _finish(fig: Any, axes: list[Any], xlabel: str, panels: list[tuple[str, str]]) -> None:
    for ax, (title, _) in zip(axes, panels, strict=False):
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Jaccard (test slab)")
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8)


def _clusters(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The models with a parameter count, in clusters of counts within
    :data:`_SAME_DECADES` of the cluster's smallest (ascending)."""
    models = sorted(
        (r for r in rows if not _is_baseline(r) and r.get("parameters") not in (None, "", 0)),
        key=lambda r: float(r["parameters"]),
    )
    clusters: list[list[Mapping[str, Any]]] = []
    for row in models:
        p = float(row["parameters"])
        if clusters and math.log10(p / float(clusters[-1][0]["parameters"])) <= _SAME_DECADES:
            clusters[-1].append(row)
        else:
            clusters.append([row])
    return clusters


def _centre(cluster: Sequence[Mapping[str, Any]]) -> float:
    """Geometric mean of the cluster's parameter counts."""
    logs = [math.log10(float(r["parameters"])) for r in cluster]
    return 10 ** (sum(logs) / len(logs))


def _spread_x(clusters: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """Model name -> x of its point: the models of a cluster spread symmetrically around its
    centre (in the order of their group, then name) by at most :data:`_JITTER_DECADES`, less
    when the cluster is large, so that clusters stay apart."""
    centres = [math.log10(_centre(c)) for c in clusters]
    gap = min((b - a for a, b in itertools.pairwise(centres)), default=1.0)
    xs = {}
    for centre, members in zip(centres, clusters, strict=True):
        step = min(_JITTER_DECADES, 0.7 * max(gap, 0.3) / len(members))
        members = sorted(members, key=lambda r: (_group(r, *_ARCH), str(r["model"])))
        for i, row in enumerate(members):
            xs[str(row["model"])] = 10 ** (centre + step * (i - (len(members) - 1) / 2))
    return xs


def jaccard_vs_parameters(rows: Sequence[Mapping[str, Any]]) -> Any:
    """One panel for the mean and one per phase: Jaccard of each model against its number of
    parameters (log x). The colour is the group of models that differ only in their
    architecture (filters, depth), given in the legend; models of (about) equal parameter
    counts are spread a little along x and their architecture is written once above them."""
    panels = _panels(rows)
    fig, axes = _figure(rows, "Jaccard vs number of parameters")
    clusters = _clusters(rows)
    xs = _spread_x(clusters)
    models = [r for c in clusters for r in c]
    groups = sorted({_group(r, *_ARCH) for r in models})
    style = {g: _style(i) for i, g in enumerate(groups)}
    for ax, (_, column) in zip(axes, panels, strict=False):
        for row in models:
            y = _value(row.get(column))
            if not math.isnan(y):
                g = _group(row, *_ARCH)
                colour, marker = style[g]
                ax.plot(xs[str(row["model"])], y, marker, color=colour, label=g, alpha=0.85)
        for cluster in clusters:
            ys = [_value(r.get(column)) for r in cluster]
            ys = [y for y in ys if not math.isnan(y)]
            if ys:
                arch = "/".join(sorted({_group(r, *_NAME_ORDER[2:]) for r in cluster}))
                ax.annotate(
                    arch,
                    (_centre(cluster), max(ys)),
                    xytext=(0, 7),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                )
        _baselines(ax, rows, column)
        ax.set_xscale("log")
        if clusters:
            ax.set_xlim(_centre(clusters[0]) / 10**0.3, _centre(clusters[-1]) * 10**0.3)
    _finish(fig, axes, "parameters", panels)
    return fig


def learning_curve(rows: Sequence[Mapping[str, Any]]) -> Any:
    """One panel for the mean and one per phase: Jaccard against the number of annotated
    training slices, one line per group of models that differ only in that number
    (:func:`curve_groups`); groups are shifted a little along x so that points at one x
    stay apart."""
    panels = _panels(rows)
    fig, axes = _figure(rows, "Learning curve: Jaccard vs annotated training slices")
    groups = curve_groups(rows)
    ticks = sorted({int(r["annotated_slices"]) for m in groups.values() for r in m})
    gap = min((b - a for a, b in itertools.pairwise(ticks)), default=1)
    for ax, (_, column) in zip(axes, panels, strict=False):
        for i, (label, members) in enumerate(groups.items()):
            shift = min(0.08, 0.5 / len(groups)) * gap * (i - (len(groups) - 1) / 2)
            pts = [(int(r["annotated_slices"]) + shift, _value(r.get(column))) for r in members]
            pts = [p for p in pts if not math.isnan(p[1])]
            if pts:
                colour, marker = _style(i)
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    f"{marker}-",
                    color=colour,
                    label=label,
                    alpha=0.85,
                )
        _baselines(ax, rows, column)
        if ticks:
            ax.set_xticks(ticks)
    _finish(fig, axes, "annotated training slices", panels)
    return fig


def save(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` as PNG at ``path`` (atomically) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)
