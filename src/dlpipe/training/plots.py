"""Training plots: loss and Jaccard curves, and a validation overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlpipe._io import atomic_path


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

    from dlpipe.training.data import PatchDataset

    ds = PatchDataset(trainer.source, trainer.val_specs, trainer.mode, trainer.patch,
                      trainer.context)
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
    n = len(trainer.classes)
    cmap = plt.get_cmap("viridis", n)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    axes[0].imshow(shown, cmap="gray")
    axes[0].set_title("image")
    axes[1].imshow(np.ma.masked_where(ignore, mask), cmap=cmap, vmin=-0.5, vmax=n - 0.5)
    axes[1].set_title("truth")
    im = axes[2].imshow(pred, cmap=cmap, vmin=-0.5, vmax=n - 0.5)
    axes[2].set_title("prediction")
    axes[3].imshow(err, cmap=ListedColormap(["0.6", "tab:green", "tab:red"]), vmin=0, vmax=2)
    axes[3].set_title("errors (red)")
    for a in axes:
        a.axis("off")
    cbar = fig.colorbar(im, ax=axes[:3], ticks=range(n), fraction=0.02)
    cbar.ax.set_yticklabels(trainer.classes)
    return _save(fig, path)
