"""Figures of an evaluation: per-class Jaccard bars, confusion heatmap, overlay slices."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.labels import IGNORE_INDEX
from dlpipe.stores import ngff


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_bars(ax: Any, bars: Any, values: Sequence[float], fmt: str, fontsize: int) -> None:
    """Write each bar's value above it (``fmt``), ``n/a`` for NaN."""
    for b, v in zip(bars, values, strict=True):
        ax.text(
            b.get_x() + b.get_width() / 2,
            b.get_height() + 0.01,
            "n/a" if math.isnan(v) else fmt.format(v),
            ha="center",
            va="bottom",
            fontsize=fontsize,
        )


def save_figures(out_json: Path, figures: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """Save ``figures`` beside ``out_json`` (``<stem>_plots/``) and close them.

    Returns the saved files as ``(path, "plots")`` artifacts of a
    :class:`~dlpipe.results.StageResult`.
    """
    plot_dir = out_json.parent / f"{out_json.stem}_plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for fname, fig in figures.items():
        fig.savefig(plot_dir / fname, dpi=100)
    plt = _plt()
    for fig in figures.values():
        plt.close(fig)
    return [(plot_dir / fname, "plots") for fname in figures]


def jaccard_bars(result: dict[str, Any]) -> Any:
    """Bar chart of the Jaccard index per class (absent classes drawn as 'n/a')."""
    plt = _plt()
    names = list(result["per_class"])
    values = [result["per_class"][n]["jaccard"] for n in names]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.5))
    shown = [0 if math.isnan(v) else v for v in values]
    bars = ax.bar(names, shown, color="tab:blue")
    label_bars(ax, bars, values, "{:.3f}", 8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("Jaccard")
    ax.set_title(f"mean Jaccard {result['mean_jaccard']:.3f}")
    fig.tight_layout()
    return fig


def confusion_heatmap(result: dict[str, Any]) -> Any:
    """Heatmap of the confusion matrix normalised per true class (row), with counts."""
    plt = _plt()
    cm = np.asarray(result["confusion"], dtype=np.float64)
    names = result["classes"]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 2.5, 1.0 * len(names) + 2))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{int(cm[i, j])}",
                ha="center",
                va="center",
                color="w" if norm[i, j] < 0.6 else "k",
                fontsize=7,
            )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def paint(grey: np.ndarray, labels: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Labels over a grey image in the colours of napari and the stores (:data:`ngff.PALETTE`).

    Parameters
    ----------
    grey : (y, x) float in 0..1
    labels : (y, x) integer labels; 0 and values above 255 (unlabelled) stay grey

    Returns
    -------
    ndarray (y, x, 3) float in 0..1
    """
    table = np.array([ngff.rgba(v) for v in range(256)], np.float64) / 255
    lab = np.asarray(labels).astype(np.int64)
    colour = table[np.clip(lab, 0, 255)]
    a = np.where((lab > 0) & (lab < 255), alpha * colour[..., 3], 0.0)[..., None]
    return np.stack([grey] * 3, axis=-1) * (1 - a) + colour[..., :3] * a


def class_legend(fig: Any, classes: Sequence[str]) -> None:
    """A legend of the class colours (:func:`ngff.rgba`) below the figure's panels."""
    from matplotlib.patches import Patch

    handles = [
        Patch(
            facecolor=np.array(ngff.rgba(v)[:3]) / 255 if v else "none",
            edgecolor="0.3",
            label=f"{v} {name}" + (" (no colour)" if v == 0 else ""),
        )
        for v, name in enumerate(classes)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9)


def overlay(
    image: np.ndarray | None,
    truth: np.ndarray,
    pred: np.ndarray,
    z: int,
    ignore_index: int | None = IGNORE_INDEX,
    classes: Sequence[str] | None = None,
) -> Any:
    """One slice: image, truth, prediction and the image with wrong voxels in red.

    Truth and prediction are painted over the image in the label colours of the stores
    (napari shows the same); a legend names the classes.

    Parameters
    ----------
    image : (y, x) grey values or None (the truth is shown instead)
    truth, pred : (y, x) labels
    classes : class names (default ``class 0``, ``class 1``, ...)
    """
    plt = _plt()
    wrong = pred != truth
    if ignore_index is not None:
        wrong &= truth != ignore_index
    base = image if image is not None else truth
    base = base.astype(np.float64)
    lo, hi = np.percentile(base, [0.5, 99.5]) if base.size else (0, 1)
    grey = np.clip((base - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.stack([grey] * 3, axis=-1)
    rgb[wrong] = [1.0, 0.0, 0.0]
    vmax = max(int(np.max(truth[truth != ignore_index], initial=0)), int(pred.max(initial=0)), 1)
    names = list(classes or [f"class {v}" for v in range(vmax + 1)])
    fig, axes = plt.subplots(1, 4, figsize=(13, 4.0))
    axes[0].imshow(grey, cmap="gray")
    axes[0].set_title(f"image z={z}" if image is not None else f"truth z={z}")
    shown_truth = np.where(truth == ignore_index, 0, truth) if ignore_index is not None else truth
    axes[1].imshow(paint(grey, shown_truth))
    axes[1].set_title("truth")
    axes[2].imshow(paint(grey, pred))
    axes[2].set_title("prediction")
    axes[3].imshow(rgb)
    axes[3].set_title(f"errors (red): {wrong.mean():.1%}")
    for a in axes:
        a.axis("off")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    class_legend(fig, names)
    return fig


def overlay_slices(z_ranges: Sequence[tuple[int, int]], n: int = 3) -> list[int]:
    """``n`` z indices spread evenly over the evaluated ranges."""
    zs = [z for z0, z1 in z_ranges for z in range(z0, z1)]
    if not zs:
        return []
    pick = np.linspace(0, len(zs) - 1, min(n, len(zs)) + 2)[1:-1] if len(zs) > n else range(len(zs))
    return sorted({zs[int(round(i))] for i in pick})
