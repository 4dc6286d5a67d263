"""Figures of an instance evaluation: per-class AP/F1/PQ bars, size histograms, outlines."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlpipe.evaluation.plots import _plt, label_bars


def ap_f1_bars(result: dict[str, Any]) -> Any:
    """Grouped bars of AP, AP50, F1 (at ``f1_iou``) and PQ per class and overall (NaN: 0)."""
    plt = _plt()
    names = [*result["per_class"], "overall"]
    rows = [*result["per_class"].values(), result["overall"]]
    keys = [
        ("ap", "AP@[.50:.95]"),
        ("ap50", "AP50"),
        ("f1", f"F1@{result['f1_iou']:g}"),
        ("pq", "PQ"),
    ]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
    width = 0.8 / len(keys)
    for k, (key, label) in enumerate(keys):
        xs = np.arange(len(names)) + (k - (len(keys) - 1) / 2) * width
        vals = [r.get(key, math.nan) for r in rows]
        bars = ax.bar(xs, [0 if math.isnan(v) else v for v in vals], width, label=label)
        label_bars(ax, bars, vals, "{:.2f}", 7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=8, ncols=4, loc="upper center")
    o = result["overall"]
    ax.set_title(f"{o['n_matched']} of {o['n_true']} true matched, {o['n_pred']} predicted")
    fig.tight_layout()
    return fig


def outline_overlay(
    image: np.ndarray | None, true: np.ndarray, pred: np.ndarray, title: str = ""
) -> Any:
    """The image with true instance outlines in green and predicted ones in red.

    Parameters
    ----------
    image : (y, x) or (y, x, c) grey/colour image, or None (black background)
    true, pred : (y, x) instance label images
    """
    from skimage.segmentation import find_boundaries

    plt = _plt()
    if image is None:
        grey = np.zeros(true.shape, np.float64)
    else:
        img = np.asarray(image, dtype=np.float64)
        grey = img.mean(-1) if img.ndim == 3 else img
        lo, hi = np.percentile(grey, [0.5, 99.5]) if grey.size else (0, 1)
        grey = np.clip((grey - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.stack([grey] * 3, axis=-1)
    rgb[find_boundaries(true, mode="inner")] = [0.0, 1.0, 0.0]
    rgb[find_boundaries(pred, mode="inner")] = [1.0, 0.0, 0.0]
    fig, ax = plt.subplots(figsize=(6, 6 * true.shape[0] / max(true.shape[1], 1) + 0.4))
    ax.imshow(rgb)
    ax.set_title(
        f"{title} truth (green) {len(np.unique(true)) - 1}, "
        f"prediction (red) {len(np.unique(pred)) - 1}",
        fontsize=9,
    )
    ax.axis("off")
    fig.tight_layout()
    return fig


def size_histograms(
    diameters: dict[str, tuple[np.ndarray, np.ndarray]], result: dict[str, Any]
) -> Any:
    """Histograms of the equivalent diameters, predicted vs true, one panel per class."""
    plt = _plt()
    names = [n for n, (dp, dt) in diameters.items() if len(dp) or len(dt)] or list(diameters)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3.2))
    axes = np.atleast_1d(axes)
    unit = "pixels" if result.get("size_unit", "pixel") == "pixel" else "physical units"
    for ax, name in zip(axes, names, strict=False):
        dp, dt = diameters[name]
        both = np.concatenate([dp, dt]) if len(dp) + len(dt) else np.zeros(1)
        bins = np.linspace(0, float(both.max()) * 1.05 + 1e-9, 25)
        ax.hist(dt, bins=bins, alpha=0.6, label=f"true ({len(dt)})", color="tab:green")
        ax.hist(dp, bins=bins, alpha=0.6, label=f"predicted ({len(dp)})", color="tab:red")
        m = result["per_class"].get(name, {})
        w1, ce = m.get("size_w1", math.nan), m.get("count_error_signed", math.nan)
        ax.set_title(f"{name}: W1 {w1:.3g}, count error {ce:+.1%}", fontsize=9)
        ax.set_xlabel(f"equivalent diameter ({unit})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_figures(result: dict[str, Any], pred: Any, truth: Any, overlays: int) -> dict[str, Any]:
    """The figures of an images evaluation: AP/F1 bars and ``overlays`` outline overlays
    (evenly spread over the images; truth ``images`` shown when the truth holds them)."""
    figs = {"ap_f1.png": ap_f1_bars(result)}
    n = int(pred["instances"].shape[0])
    picks = sorted({int(round(v)) for v in np.linspace(0, n - 1, min(overlays, n))}) if n else []
    images = truth["images"] if "images" in truth else None
    names = dict(truth.attrs).get("image_names") or []
    for i in picks:
        img = None if images is None else np.asarray(images[i])
        title = names[i] if i < len(names) else f"image {i}"
        figs[f"outlines_{i:04d}.png"] = outline_overlay(
            img, np.asarray(truth["instances"][i]), np.asarray(pred["instances"][i]), title
        )
    return figs
