"""Training plots: loss and Jaccard curves, and a validation overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlpipe.stores.atomic import atomic_path
from dlpipe.training.data import PatchDataset
from dlpipe.training.instances import CropDataset


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def save_plots(folder: Path, history: list[dict[str, Any]], trainer: Any, model: Any) -> list[Path]:
    """Write ``loss.png``, ``jaccard.png`` and (with validation data) ``val_overlay.png``.

    The overlay shows one validation patch (the one with the most voxels of a rare class,
    if any): image, truth, prediction, and errors (green correct, red wrong, grey unlabelled).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] for r in history]
    out = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    out.append(_save(fig, folder / "loss.png"))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for c in trainer.classes:
        ax.plot(epochs, [r[f"val_jaccard_{c}"] for r in history], label=c)
    ax.plot(epochs, [r["val_mean_jaccard"] for r in history], "k--", label="mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Jaccard")
    ax.set_ylim(0, 1.02)
    ax.legend()
    out.append(_save(fig, folder / "jaccard.png"))
    if trainer.val_specs:
        out.append(_overlay(folder / "val_overlay.png", trainer, model))
    return out


def _overlay(path: Path, trainer: Any, model: Any) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from dlpipe.evaluation.plots import class_legend, paint  # matplotlib: imported when plotting

    ds = PatchDataset(
        trainer.source, trainer.val_specs, trainer.mode, trainer.patch, trainer.context
    )
    best, best_n = 0, -1
    rare = trainer.rare or [len(trainer.classes) - 1]
    for i, spec in enumerate(trainer.val_specs[:64]):
        _, mask, _ = ds.read(spec)
        n = int(np.isin(mask, rare).sum())
        if n > best_n:
            best, best_n = i, n
    img, mask, _ = ds.read(trainer.val_specs[best])
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(img)[None].to(trainer.device)).argmax(1)[0].cpu().numpy()
    if trainer.mode == "3d":
        mid = mask.shape[0] // 2
        img, mask, pred = img[:, mid], mask[mid], pred[mid]
    shown = img[img.shape[0] // 2]
    ignore = mask == trainer.params["ignore_index"]
    err = np.where(ignore, 0, np.where(pred == mask, 1, 2))
    lo, hi = np.percentile(shown, [0.5, 99.5]) if shown.size else (0, 1)
    grey = np.clip((shown.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1)
    fig, axes = plt.subplots(1, 4, figsize=(13, 4.0))
    axes[0].imshow(grey, cmap="gray")
    axes[0].set_title("image")
    axes[1].imshow(paint(grey, np.where(ignore, 0, mask)))
    axes[1].set_title("truth (unlabelled: grey)")
    axes[2].imshow(paint(grey, pred))
    axes[2].set_title("prediction")
    axes[3].imshow(err, cmap=ListedColormap(["0.6", "tab:green", "tab:red"]), vmin=0, vmax=2)
    axes[3].set_title("errors (red)")
    for a in axes:
        a.axis("off")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    class_legend(fig, trainer.classes)
    return _save(fig, path)


def save_instance_plots(
    folder: Path, history: list[dict[str, Any]], task: Any, model: Any
) -> list[Path]:
    """Mask R-CNN plots: ``loss_terms.png`` and (with validation tiles) ``val_overlay.png``.

    ``loss_terms.png`` has one panel per loss term (total, classifier, box, mask, RPN
    objectness, RPN box), training solid and validation dashed. The overlay shows the
    validation tile with the most objects: the image, the true outlines and the predicted
    outlines (score >= 0.5).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] for r in history]
    terms = ["loss", *(k for k in history[0] if k.startswith("train_loss_"))]
    terms = [t if t == "loss" else t[len("train_") :] for t in terms]
    cols = 3
    rows = (len(terms) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, term in zip(axes.ravel(), terms, strict=False):
        ax.plot(epochs, [r[f"train_{term}"] for r in history], label="train")
        val = [r.get(f"val_{term}", np.nan) for r in history]
        if np.isfinite(np.asarray(val, float)).any():
            ax.plot(epochs, val, "--", label="validation")
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(terms) :]:
        ax.axis("off")
    fig.tight_layout()
    out = [_save(fig, folder / "loss_terms.png")]
    if task.val_specs:
        out.append(_instance_overlay(folder / "val_overlay.png", task, model))
    return out


def _instance_overlay(path: Path, task: Any, model: Any) -> Path:
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    ds = CropDataset(
        task.source,
        task.val_specs[:64],
        task.tile,
        None,
        task.params["maskrcnn"]["min_object_area"],
    )
    counts = [len(np.unique(ds.read(s)[2])) for s in ds.specs]
    spec = ds.specs[int(np.argmax(counts))]
    img, _, inst = ds.sample(spec)
    x = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
    model.eval()
    with torch.no_grad():
        pred = model([torch.from_numpy(x).to(task.device)])[0]
    keep = pred["scores"].cpu().numpy() >= 0.5
    masks = pred["masks"].cpu().numpy()[keep, 0] >= 0.5
    shown = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    axes[0].imshow(shown, cmap="gray")
    axes[0].set_title("image")
    axes[1].imshow(shown, cmap="gray")
    axes[1].contour(find_boundaries(inst, mode="inner"), [0.5], colors="lime", linewidths=0.6)
    axes[1].set_title(f"truth ({len(np.unique(inst)) - 1} objects)")
    axes[2].imshow(shown, cmap="gray")
    for m in masks:
        if m.any():
            axes[2].contour(m, [0.5], colors="red", linewidths=0.6)
    axes[2].set_title(f"prediction ({int(keep.sum())} with score >= 0.5)")
    for a in axes:
        a.axis("off")
    return _save(fig, path)
