"""U-Net training on a Zarr volume: the model-specific part of the shared loop (loop.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dlpipe.errors import UserError
from dlpipe.models import UNet, build_unet, count_parameters, torch_device
from dlpipe.stores.channels import card_channels
from dlpipe.training.augment import Augment
from dlpipe.training.data import (
    MODES,
    LabelIndex,
    PatchDataset,
    PatchLoader,
    PatchSampler,
    PatchSpec,
    max_label,
    scan_labels,
)
from dlpipe.training.losses import make_loss
from dlpipe.training.metrics import confusion, jaccard, mean_jaccard
from dlpipe.training.optim import autocast, check_shared, loader_workers, optimiser, scheduler
from dlpipe.training.plots import save_plots
from dlpipe.training.sparse import SliceSampler
from dlpipe.training.stores import TrainingSource, open_source

log = logging.getLogger(__name__)

__all__ = ["UNetTask"]


def _check(params: Mapping[str, Any]) -> None:
    if params["model"] != "unet":
        raise UserError(f"train.model {params['model']!r} is not handled by the U-Net trainer")
    if params["input"] not in MODES:
        raise UserError(f"unknown input {params['input']!r} (one of {', '.join(MODES)})")
    check_shared(params)
    want = 3 if params["input"] == "3d" else 2
    if len(params["patch_size"]) != want:
        raise UserError(
            f"patch_size {params['patch_size']} needs {want} values for {params['input']} input"
        )
    if params["input"] == "2.5d" and params["context_slices"] % 2 == 0:
        raise UserError(f"context_slices must be odd, got {params['context_slices']}")
    m = 2 ** (params["architecture"]["depth"] - 1)
    if any(p % m for p in params["patch_size"]):
        raise UserError(
            f"patch_size {params['patch_size']} must be multiples of {m} for depth "
            f"{params['architecture']['depth']}"
        )


class UNetTask:
    """The U-Net part of a training run, built from the store and the ``train`` section."""

    name = "unet"

    def __init__(self, store: str | Path, params: Mapping[str, Any]) -> None:
        _check(params)
        self.params = dict(params)
        p = self.params
        self.source: TrainingSource = open_source(
            store,
            labels=p["labels"],
            classes=p["classes"],
            val_fraction=p["val_fraction"],
            max_images=p.get("max_images"),
            ignore_index=p["ignore_index"],
            strict=p.get("strict", False),
            axes=p.get("axes"),
        )
        src = self.source
        _, labels = src.open()
        if src.p99_9 <= src.p0_1:
            raise UserError(
                f"statistics p99_9 ({src.p99_9}) must exceed p0_1 ({src.p0_1}) to normalise",
                path=src.path,
            )
        if not src.classes:
            top = max_label(labels, p["ignore_index"])
            src.classes = [f"class_{i}" for i in range(max(top + 1, 2))]
        self.classes = list(src.classes)
        if len(self.classes) < 2:
            raise UserError(f"need at least 2 classes, got {self.classes}")
        self.mode = p["input"]
        self.patch = tuple(int(v) for v in p["patch_size"])
        _, ny, nx = src.shape
        if self.patch[-2] > ny or self.patch[-1] > nx:
            raise UserError(
                f"patch_size {list(self.patch)} is larger than the volume's (y, x) = ({ny}, {nx})",
                path=src.path,
            )
        if src.kind == "annotations":
            self._sparse(src, labels)
        else:
            self._dense(src, labels)
        self.augment = Augment(**p["augment"])
        self._loader: PatchLoader | None = None
        self.context = p["context_slices"] if self.mode == "2.5d" else 1
        self.architecture = dict(p["architecture"])
        self.architecture.update(
            dim=3 if self.mode == "3d" else 2,
            in_channels=self.context,
            n_classes=len(self.classes),
        )
        self.device = torch_device(p["device"], "train.device")
        self.amp = bool(p["amp"]) and self.device.type == "cuda"

    def _dense(self, src: TrainingSource, labels: Any) -> None:
        """Patches of labelled z-slices of the training z-range; validation z-range."""
        p = self.params
        t0, t1 = src.train
        if t1 <= t0:
            raise UserError(f"empty training set: split train = {list(src.train)}", path=src.path)
        if self.mode == "3d" and self.patch[0] > t1 - t0:
            raise UserError(
                f"patch_size {list(self.patch)} is larger than the training slab "
                f"({t1 - t0} slices in z)",
                path=src.path,
            )
        self.index: LabelIndex = scan_labels(labels, len(self.classes), p["ignore_index"])
        self.train_counts = self.index.class_counts(src.train)
        self.rare = self._rare_classes(
            src, f"no labelled voxel in the training range z {list(src.train)}"
        )
        self.sampler = PatchSampler(
            self.index, src.shape, self.mode, self.patch, p["oversample"], self.rare
        )
        self.val_specs = self._capped(self.sampler.grid(src.val))
        self.monitor = "val_mean_jaccard" if self.val_specs else "train_loss"
        if not self.val_specs:
            log.warning(
                "train: no labelled voxel in the validation range z %s; the best checkpoint "
                "and early stopping follow the training loss instead",
                list(src.val),
            )

    def _rare_classes(self, src: TrainingSource, empty: str) -> list[int]:
        """Classes under ``train.rare_fraction`` of the labelled training voxels.

        ``self.train_counts`` (C,) int64 must be set; ``empty`` says why there is no
        labelled voxel, for the :class:`UserError` raised when they sum to zero.
        """
        if self.train_counts.sum() == 0:
            raise UserError(f"empty training set: {empty}", path=src.path)
        freq = self.train_counts / self.train_counts.sum()
        cut = self.params["rare_fraction"]
        return [int(c) for c in range(len(self.classes)) if 0 < freq[c] < cut]

    def _capped(self, specs: list[PatchSpec]) -> list[PatchSpec]:
        """At most ``train.val_max_patches`` of ``specs``, evenly spaced (all when 0)."""
        n = self.params["val_max_patches"]
        if n and len(specs) > n:
            pick = np.linspace(0, len(specs) - 1, n).round()
            specs = [specs[int(i)] for i in pick]
        return specs

    def _sparse(self, src: TrainingSource, labels: Any) -> None:
        """Patches around the training slices of placed annotations; validation slices."""
        p, split = self.params, src.extra["split"]
        if self.mode == "3d" and self.patch[0] > src.shape[0]:
            raise UserError(
                f"patch_size {list(self.patch)} is deeper than the volume ({src.shape[0]} "
                "slices in z)",
                path=src.path,
            )
        axes = src.extra["axes"]
        self.sampler = SliceSampler(
            labels,
            {a: v for a, v in split["train"].items() if a in axes},
            {a: v for a, v in split["val"].items() if a in axes},
            src.shape,
            self.mode,
            self.patch,
            p["oversample"],
            len(self.classes),
            p["ignore_index"],
        )
        self.train_counts = self.sampler.class_counts
        self.rare = self._rare_classes(
            src, f"no annotated voxel in the training slices {split['train']}"
        )
        self.sampler.rare = self.rare
        self.val_specs = self._capped(self.sampler.grid())
        self.monitor = "val_mean_jaccard" if self.val_specs else "train_loss"
        if not self.val_specs:
            log.warning(
                "train: no validation slice; the best checkpoint and early stopping follow "
                "the training loss instead"
            )

    # ------------------------------------------------------------------ pieces
    def build(self) -> tuple[UNet, torch.optim.Optimizer, Any]:
        torch.manual_seed(self.params["seed"])
        model = build_unet(self.architecture, prefix="train.architecture").to(self.device)
        self.loss_fn = make_loss(
            self.params["loss"],
            n_classes=len(self.classes),
            class_weights=self.params["class_weights"],
            class_counts=self.train_counts.tolist(),
            focal_gamma=self.params["focal_gamma"],
            ignore_index=self.params["ignore_index"],
        ).to(self.device)
        opt = optimiser(self.params, model.parameters())
        return model, opt, scheduler(self.params, opt)

    def loader(self, specs: list, augment: bool) -> DataLoader:
        """Batches of ``specs`` from the run's one :class:`PatchLoader` (built on first use;
        its workers live as long as the task)."""
        if self._loader is None:
            ds = PatchDataset(self.source, [], self.mode, self.patch, self.context, self.augment)
            self._loader = PatchLoader(
                ds,
                batch_size=self.params["batch_size"],
                workers=loader_workers(self.params["workers"], self.device),
                pin_memory=self.device.type == "cuda",
            )
        return self._loader(specs, augment)

    def autocast(self):
        return autocast(self.device, self.amp)

    def evaluate(
        self, model: torch.nn.Module, loss_fn: torch.nn.Module
    ) -> tuple[float, np.ndarray]:
        """Validation loss and confusion matrix over the fixed validation patches."""
        n = len(self.classes)
        cm = np.zeros((n, n), dtype=np.int64)
        total, batches = 0.0, 0
        model.eval()
        with torch.no_grad():
            for img, mask in self.loader(self.val_specs, augment=False):
                img, mask = img.to(self.device), mask.to(self.device)
                with self.autocast():
                    logits = model(img)
                total += float(loss_fn(logits.float(), mask))
                batches += 1
                cm += confusion(logits.argmax(1), mask, n, self.params["ignore_index"])
        return (total / batches if batches else float("nan")), cm

    # ------------------------------------------------------------ the Task protocol
    def describe(self, model: torch.nn.Module) -> str:
        return (
            f"{self.mode} U-Net, {count_parameters(model)} parameters, {self.device}, "
            f"classes {self.classes}, rare {[self.classes[c] for c in self.rare]}, "
            f"{len(self.val_specs)} val patches"
        )

    def batches(self, epoch: int, rng: np.random.Generator) -> Any:
        p = self.params
        specs = self.sampler.epoch(p["steps_per_epoch"] * p["batch_size"], self.source.train, rng)
        return self.loader(specs, augment=True)

    def step(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        img, mask = batch
        img = img.to(self.device, non_blocking=True)
        mask = mask.to(self.device, non_blocking=True)
        with self.autocast():
            logits = model(img)
        return {"loss": self.loss_fn(logits.float(), mask)}

    def validate(self, model: torch.nn.Module) -> tuple[float | None, dict[str, float]]:
        if self.val_specs:
            val_loss, cm = self.evaluate(model, self.loss_fn)
            per, mean = jaccard(cm), mean_jaccard(cm)
            self._warn_absent(cm)
            score: float | None = mean
        else:
            val_loss, per, mean = float("nan"), np.full(len(self.classes), np.nan), float("nan")
            score = None
        row = {"val_loss": val_loss}
        row.update({f"val_jaccard_{c}": float(v) for c, v in zip(self.classes, per, strict=True)})
        row["val_mean_jaccard"] = mean
        return score, row

    def _warn_absent(self, cm: np.ndarray) -> None:
        """Warn once when classes are absent from the validation labels.

        Their Jaccard is NaN (left out of the mean); with only one class present the mean
        is that class's alone (1.0 for a model that predicts only it), which says nothing.
        """
        if getattr(self, "_absent_warned", False):
            return
        self._absent_warned = True
        present = cm.sum(axis=1) > 0
        absent = [c for c, here in zip(self.classes, present, strict=True) if not here]
        if not absent:
            return
        only = [c for c, here in zip(self.classes, present, strict=True) if here]
        log.warning(
            "train: validation labels hold no voxel of class(es) %s: their Jaccard is NaN "
            "and left out of the mean%s",
            ", ".join(absent),
            f"; with only {', '.join(only) or 'no class'} present the mean Jaccard says "
            "nothing about the others"
            if len(only) <= 1
            else "",
        )

    def summary(self, row: Mapping[str, Any]) -> str:
        return f"val loss {row['val_loss']:.4f}, val mean Jaccard {row['val_mean_jaccard']:.4f}"

    def plots(
        self, folder: Path, history: list[dict[str, Any]], model: torch.nn.Module
    ) -> list[Path]:
        return save_plots(folder, history, self, model)

    def _split(self) -> dict[str, Any]:
        """The card's split: z-ranges, or the annotated slices of each part."""
        src = self.source
        if src.kind != "annotations":
            return {"train": list(src.train), "val": list(src.val)}
        return {
            "kind": "annotated slices",
            "labels": src.extra["labels"],
            "axes": src.extra["axes"],
            **src.extra["split"],
        }

    def card(self, best_row: Mapping[str, Any]) -> dict[str, Any]:
        p = self.params
        return {
            "model": "unet",
            "architecture": self.architecture,
            "input": self.mode,
            "context_slices": self.context,
            "patch_size": list(self.patch),
            "classes": self.classes,
            **card_channels(1),
            "normalisation": {"p0_1": self.source.p0_1, "p99_9": self.source.p99_9},
            "ignore_index": p["ignore_index"],
            "val_jaccard": {c: best_row.get(f"val_jaccard_{c}") for c in self.classes},
            "val_mean_jaccard": best_row.get("val_mean_jaccard"),
            "split": self._split(),
            "train_class_counts": self.train_counts.tolist(),
            "rare_classes": [self.classes[c] for c in self.rare],
            "loss": p["loss"],
        }
