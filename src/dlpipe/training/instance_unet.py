"""instance-unet training: a U-Net with semantic, boundary and distance heads.

The model-specific part of the shared loop (``loop.py``): patches and their targets come from
:mod:`dlpipe.training.instance_data`; the loss is the sum of three weighted terms, each
logged apart (``train_loss_semantic``, ``train_loss_boundary``, ``train_loss_distance`` and
their ``val_`` twins); the best checkpoint follows the validation loss. After training,
:meth:`InstanceUNetTask.finish` predicts the validation images whole and picks the seeded
watershed's thresholds by a grid search (F1 at IoU 0.5), recorded in the card under
``watershed``; the tuned values replace the configured ones only when the validation images
hold at least ``tune_min_objects`` true objects and they gain at least ``tune_min_gain``
validation F1 over the configured ones (:func:`dlpipe.postprocess.watershed.choose_thresholds`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from dlpipe.errors import UserError
from dlpipe.models import count_parameters, torch_device
from dlpipe.models.instance_unet import (
    FAMILY,
    build_instance_unet,
    head_channels,
    split_heads,
)
from dlpipe.postprocess.watershed import check_thresholds, choose_thresholds, grid_search
from dlpipe.prediction.instance_maps import infer_maps
from dlpipe.stores.channels import card_channels
from dlpipe.training.augment import Augment, apply_dihedral, dihedral_elements
from dlpipe.training.instance_data import InstanceData, Patch, open_instance_data
from dlpipe.training.losses import make_loss
from dlpipe.training.optim import autocast, check_shared, optimiser, scheduler

log = logging.getLogger(__name__)

__all__ = ["TERMS", "InstanceUNetTask"]

TERMS = ("loss_semantic", "loss_boundary", "loss_distance")
MODES = ("2d", "2.5d", "3d")


def _check(p: Mapping[str, Any]) -> None:
    if p["model"] != FAMILY:
        raise UserError(f"train.model {p['model']!r} is not handled by the instance-unet trainer")
    if p["input"] not in MODES:
        raise UserError(f"unknown input {p['input']!r} (one of {', '.join(MODES)})")
    check_shared(p)
    check_thresholds(p["instance_unet"], "train.instance_unet")
    want = 3 if p["input"] == "3d" else 2
    if len(p["patch_size"]) != want:
        raise UserError(f"patch_size {p['patch_size']} needs {want} values for {p['input']} input")
    if p["input"] == "2.5d" and p["context_slices"] % 2 == 0:
        raise UserError(f"context_slices must be odd, got {p['context_slices']}")
    m = 2 ** (p["architecture"]["depth"] - 1)
    if any(v % m for v in p["patch_size"]):
        raise UserError(
            f"patch_size {p['patch_size']} must be multiples of {m} for depth "
            f"{p['architecture']['depth']}"
        )


class InstanceUNetTask:
    """The instance-unet part of a training run, built from the store and ``train``."""

    name = FAMILY
    monitor = "val_loss"

    def __init__(self, store: str | Path, params: Mapping[str, Any]) -> None:
        _check(params)
        p = self.params = dict(params)
        self.ip = dict(p["instance_unet"])
        self.data: InstanceData = open_instance_data(store, p)
        self.classes = list(self.data.classes)
        self.mode = p["input"]
        self.patch = tuple(int(v) for v in p["patch_size"])
        self.context = self.data.context
        self.architecture = dict(p["architecture"])
        self.architecture.update(
            dim=3 if self.mode == "3d" else 2,
            in_channels=self.context,
            n_classes=head_channels(len(self.classes)),
        )
        self.multiple = 2 ** (self.architecture["depth"] - 1)
        self.augment = Augment(**p["augment"])
        self.device = torch_device(p["device"], "train.device")
        self.amp = bool(p["amp"]) and self.device.type == "cuda"
        self.weights = dict(self.ip["loss_weights"])
        self.val_patches = self._val_patches()
        if not self.val_patches:
            self.monitor = "train_loss"
            log.warning("train: no validation image; the best checkpoint follows the training loss")
        self.watershed: dict[str, Any] = {
            "seed_threshold": self.ip["seed_threshold"],
            "foreground_threshold": self.ip["foreground_threshold"],
            "min_size": self.ip["min_size"],
            "tuned": False,
        }

    # ----------------------------------------------------------------- sampling
    def _extent(self, i: int) -> tuple[int, ...]:
        return tuple(self.data.image_extent(i))

    def _train_items(self) -> list[int]:
        d = self.data
        if d.kind == "dataset":
            return list(d.train)
        if self.mode == "3d":
            return [0]
        return list(range(*d.train))

    def _random_patch(self, rng: np.random.Generator) -> Patch:
        d = self.data
        items = self._train_items()
        i = items[int(rng.integers(len(items)))]
        ext = self._extent(i)
        lo = [0] * len(ext)
        hi = list(ext)
        if d.kind == "volume" and self.mode == "3d":
            lo[0], hi[0] = d.train
        start = tuple(
            int(rng.integers(a, max(b - p, a) + 1))
            for a, b, p in zip(lo, hi, self.patch, strict=True)
        )
        return Patch(i, start)

    def _val_patches(self) -> list[Patch]:
        d = self.data
        cap = self.params["val_max_patches"] or 10**9

        def starts(n: int, p: int, a: int = 0) -> list[int]:
            if n - a <= p:
                return [a]
            return [*range(a, n - p, p), n - p]

        out: list[Patch] = []
        if d.kind == "dataset":
            for i in d.val:
                h, w = d.sizes[i]
                out += [
                    Patch(i, (y, x))
                    for y in starts(h, self.patch[0])
                    for x in starts(w, self.patch[1])
                ]
        elif d.val[1] > d.val[0]:
            z0, z1 = d.val
            _, ny, nx = d.shape
            if self.mode == "3d":
                if z1 - z0 >= 1:
                    out = [
                        Patch(0, (z, y, x))
                        for z in starts(z1, self.patch[0], z0)
                        for y in starts(ny, self.patch[1])
                        for x in starts(nx, self.patch[2])
                    ]
            else:
                out = [
                    Patch(z, (y, x))
                    for z in range(z0, z1)
                    for y in starts(ny, self.patch[0])
                    for x in starts(nx, self.patch[1])
                ]
        if len(out) > cap:
            pick = np.linspace(0, len(out) - 1, cap).round()
            out = [out[int(k)] for k in pick]
        return out

    def _sample(self, patch: Patch, rng: np.random.Generator | None) -> tuple[np.ndarray, ...]:
        img, sem, bnd, dist, _ = self.data.region(patch.image, patch.start, self.patch)
        if rng is not None:
            spatial = sem.shape
            if self.augment.dihedral:
                options = [
                    (q, f)
                    for q, f in dihedral_elements(len(spatial))
                    if all(spatial[q[k]] == spatial[k] for k in range(len(spatial)))
                ]
                q, f = options[int(rng.integers(len(options)))]
                img = apply_dihedral(img, q, f)
                sem, bnd, dist = (apply_dihedral(a, q, f) for a in (sem, bnd, dist))
            img, _ = replace(self.augment, dihedral=False)(img, sem, rng)
        return img, sem, bnd, dist

    def _batches(self, patches: list[Patch], rng: np.random.Generator | None) -> Iterator[Any]:
        bs = int(self.params["batch_size"])
        for b in range(0, len(patches), bs):
            samples = [self._sample(q, rng) for q in patches[b : b + bs]]
            yield tuple(torch.from_numpy(np.stack(a)) for a in zip(*samples, strict=True))

    # ------------------------------------------------------------ the Task protocol
    def build(self) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
        torch.manual_seed(self.params["seed"])
        model = build_instance_unet(self.architecture, prefix="train.architecture")
        model.to(self.device)
        self.semantic_loss = make_loss(
            self.params["loss"],
            n_classes=len(self.classes),
            class_weights=self.params["class_weights"],
            class_counts=[1] * len(self.classes),
            focal_gamma=self.params["focal_gamma"],
            ignore_index=255,
        ).to(self.device)
        opt = optimiser(self.params, model.parameters())
        return model, opt, scheduler(self.params, opt)

    def describe(self, model: torch.nn.Module) -> str:
        d = self.data
        return (
            f"{self.mode} instance U-Net, {count_parameters(model)} parameters, {self.device}, "
            f"classes {self.classes}, {d.kind} input, {len(self.val_patches)} val patches"
        )

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        p = self.params
        patches = [self._random_patch(rng) for _ in range(p["steps_per_epoch"] * p["batch_size"])]
        return self._batches(patches, rng)

    def _terms(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        img, sem, bnd, dist = (t.to(self.device, non_blocking=True) for t in batch)
        with autocast(self.device, self.amp):
            out = model(img)
        logits, b, d = split_heads(out.float(), len(self.classes))
        valid = (sem != 255).float()
        n = valid.sum().clamp(min=1.0)
        l_sem = self.semantic_loss(logits, sem)
        l_bnd = (F.binary_cross_entropy_with_logits(b, bnd, reduction="none") * valid).sum() / n
        l_dist = (F.binary_cross_entropy_with_logits(d, dist, reduction="none") * valid).sum() / n
        w = self.weights
        total = w["semantic"] * l_sem + w["boundary"] * l_bnd + w["distance"] * l_dist
        return {
            "loss": total,
            "loss_semantic": l_sem,
            "loss_boundary": l_bnd,
            "loss_distance": l_dist,
        }

    def step(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        return self._terms(model, batch)

    def validate(self, model: torch.nn.Module) -> tuple[float | None, dict[str, float]]:
        if not self.val_patches:
            return None, {"val_loss": float("nan")} | {f"val_{k}": float("nan") for k in TERMS}
        sums: dict[str, float] = {}
        k = 0
        model.eval()
        with torch.no_grad():
            for batch in self._batches(self.val_patches, None):
                for name, v in self._terms(model, batch).items():
                    sums[name] = sums.get(name, 0.0) + float(v)
                k += 1
        model.train()
        row = {f"val_{name}": v / max(k, 1) for name, v in sums.items()}
        return -row["val_loss"], row

    def summary(self, row: Mapping[str, Any]) -> str:
        terms = ", ".join(f"{t[5:]} {row[f'train_{t}']:.3f}" for t in TERMS if f"train_{t}" in row)
        return f"{terms}; val loss {row['val_loss']:.4f}"

    def plots(
        self, folder: Path, history: list[dict[str, Any]], model: torch.nn.Module
    ) -> list[Path]:
        return [_plot_terms(folder / "loss_terms.png", history)]

    # ---------------------------------------------------------------- tuning
    def tune_items(self) -> list[int]:
        """The validation images (z-slices) the grid search predicts whole."""
        d = self.data
        if d.kind == "dataset":
            items = list(d.val)
        elif d.val[1] <= d.val[0]:
            items = []
        elif self.mode == "3d":
            items = [0]
        else:
            items = list(range(*d.val))
        cap = int(self.ip["tune_images"])
        if len(items) > cap:
            items = [items[int(k)] for k in np.linspace(0, len(items) - 1, cap).round()]
        return items

    def finish(self, model: torch.nn.Module) -> None:
        """Grid search of the watershed thresholds on the validation images (best weights)."""
        items = self.tune_items() if self.ip["tune"] else []
        if not items:
            self.watershed["note"] = (
                "not tuned: no validation image" if self.ip["tune"] else "not tuned (tune: false)"
            )
            return
        window = self.ip["window"] or (96 if self.mode == "3d" else 512)
        margin = 16 if self.mode == "3d" else 32
        model.eval()
        maps = []
        for i in items:
            img, truth = self.data.whole(i)
            m = infer_maps(
                model,
                img,
                len(self.classes),
                window=window,
                margin=margin,
                multiple=self.multiple,
                device=self.device,
            )
            maps.append((m.foreground, m.distance, truth))
        best, table = grid_search(
            maps, self.ip["seed_grid"], self.ip["foreground_grid"], int(self.ip["min_size"])
        )
        st, ft = self.ip["seed_threshold"], self.ip["foreground_threshold"]
        if not any(r["seed_threshold"] == st and r["foreground_threshold"] == ft for r in table):
            table += grid_search(maps, [st], [ft], int(self.ip["min_size"]))[1]
        chosen = choose_thresholds(
            best,
            table,
            self.ip,
            int(self.ip["tune_min_objects"]),
            float(self.ip["tune_min_gain"]),
        )
        self.watershed.update(chosen, tuned_on=[str(i) for i in items], grid=table)
        if chosen["tuned"]:
            log.info(
                "train: watershed seed %.2f, foreground %.2f: validation F1@0.5 %.3f (%d objects)",
                chosen["seed_threshold"],
                chosen["foreground_threshold"],
                best["f1"],
                chosen["val_objects"],
            )
        else:
            log.warning("train: watershed %s", chosen["note"])

    def card(self, best_row: Mapping[str, Any]) -> dict[str, Any]:
        d = self.data
        names = d.image_names or [str(i) for i in range(len(d.sizes))]
        split = (
            {"train": [names[i] for i in d.train], "val": [names[i] for i in d.val]}
            if d.kind == "dataset"
            else {"train": list(d.train), "val": list(d.val)}
        )
        return {
            "model": FAMILY,
            "architecture": self.architecture,
            "heads": {"semantic": len(self.classes), "boundary": 1, "distance": 1},
            "input": self.mode,
            "context_slices": self.context,
            "patch_size": list(self.patch),
            "classes": self.classes,
            **card_channels(1),
            "trained_on_channels": d.channels,
            "normalisation": {"p0_1": d.p0_1, "p99_9": d.p99_9},
            "source_kind": d.kind,
            "loss": self.params["loss"],
            "loss_weights": self.weights,
            "val_loss": best_row.get("val_loss"),
            "val_losses": {t: best_row.get(f"val_{t}") for t in TERMS},
            "watershed": dict(self.watershed),
            "split": split,
        }


def _plot_terms(path: Path, history: list[dict[str, Any]]) -> Path:
    """``loss_terms.png``: total, semantic, boundary and distance losses, train and val."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from dlpipe.stores.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3))
    for ax, term in zip(axes, ("loss", *TERMS), strict=True):
        ax.plot(epochs, [r.get(f"train_{term}", np.nan) for r in history], label="train")
        ax.plot(epochs, [r.get(f"val_{term}", np.nan) for r in history], "--", label="validation")
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
