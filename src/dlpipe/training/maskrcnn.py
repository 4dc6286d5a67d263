"""Mask R-CNN training on an instance dataset Zarr: the model-specific part of the loop.

Its settings (presets, pixel sizes, monitor, architecture) are in
:mod:`dlpipe.training.maskrcnn_settings`, the pretrained weights loader in
:mod:`dlpipe.training.maskrcnn_weights`; both re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dlpipe.errors import UserError
from dlpipe.evaluation.instances import evaluate_instance_images
from dlpipe.models import build_maskrcnn, count_parameters, torch_device
from dlpipe.prediction.detections import Detection, paint_instances
from dlpipe.stores.channels import card_channels
from dlpipe.training.augment import Augment
from dlpipe.training.instances import (
    CropDataset,
    InstanceSource,
    collate,
    grid_crops,
    open_instances,
    random_crops,
)
from dlpipe.training.maskrcnn_settings import (
    PRESETS,
    apply_preset,
    architecture,
    monitor_score,
    pixel_sizes,
)
from dlpipe.training.maskrcnn_weights import CLASS_HEADS, load_pretrained
from dlpipe.training.optim import autocast, check_shared, loader_workers, optimiser, scheduler
from dlpipe.training.plots import save_instance_plots

log = logging.getLogger(__name__)

__all__ = [
    "CLASS_HEADS",
    "LOSS_TERMS",
    "PRESETS",
    "VAL_SEED",
    "MaskRCNNTask",
    "apply_preset",
    "architecture",
    "load_pretrained",
    "monitor_score",
    "pixel_sizes",
]

LOSS_TERMS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
VAL_SEED = 12345


class MaskRCNNTask:
    """The Mask R-CNN part of a training run, built from the store and the ``train`` section."""

    name = "maskrcnn"

    def __init__(self, store: str | Path, params: Mapping[str, Any]) -> None:
        p = self.params = dict(params)
        if p["model"] != "maskrcnn":
            raise UserError(f"train.model {p['model']!r} is not handled by the Mask R-CNN trainer")
        if p["input"] != "2d":
            raise UserError(f"Mask R-CNN trains on 2d images, not train.input {p['input']!r}")
        p, self.preset_applied = apply_preset(p)
        self.params = p
        check_shared(p)
        m = p["maskrcnn"]
        self.tile = int(m["tile_size"])
        self.pixel_size = pixel_sizes(store, m)
        data_px, model_px = self.pixel_size["data"], self.pixel_size["model"]
        self.source: InstanceSource = open_instances(
            store,
            classes=p["classes"],
            val_fraction=p["val_fraction"],
            scale=1.0 if data_px is None or model_px is None else data_px / model_px,
        )
        self.classes = list(self.source.classes)
        self.architecture = architecture(p, len(self.classes))
        build_maskrcnn(**self.architecture)  # bad backbone / anchors fail here, before any file
        self.val_specs = grid_crops(self.source, self.source.val, self.tile)
        if p["val_max_patches"] and len(self.val_specs) > p["val_max_patches"]:
            pick = np.linspace(0, len(self.val_specs) - 1, p["val_max_patches"]).round()
            self.val_specs = [self.val_specs[int(i)] for i in pick]
        self.monitor = m["monitor"] if self.val_specs else "train_loss"
        if not self.val_specs:
            log.warning(
                "train: no validation image (val_fraction %s); the best checkpoint "
                "and early stopping follow the training loss",
                p["val_fraction"],
            )
        self.augment = Augment(**p["augment"])
        self.device = torch_device(p["device"], "train.device")
        self.amp = bool(p["amp"]) and self.device.type == "cuda"
        self.pretrained_tensors = 0

    def build(self) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
        torch.manual_seed(self.params["seed"])
        model = build_maskrcnn(**self.architecture)
        m = self.params["maskrcnn"]
        if m["pretrained"]:
            self.pretrained_tensors = load_pretrained(model, m["pretrained"], m["pretrained_scope"])
        model.to(self.device)
        opt = optimiser(self.params, [q for q in model.parameters() if q.requires_grad])
        return model, opt, scheduler(self.params, opt)

    def describe(self, model: nn.Module) -> str:
        m = self.params["maskrcnn"]
        pre = (
            f", {self.pretrained_tensors} tensors from {m['pretrained']}" if m["pretrained"] else ""
        )
        return (
            f"Mask R-CNN {m['backbone']}-FPN, {count_parameters(model)} parameters, "
            f"{self.device}, classes {self.classes}, {len(self.source.train)} training / "
            f"{len(self.source.val)} validation images, tile {self.tile}, "
            f"{len(self.val_specs)} val tiles{pre}"
        )

    def loader(self, specs: list, augment: bool) -> DataLoader:
        ds = CropDataset(
            self.source,
            specs,
            self.tile,
            self.augment if augment else None,
            self.params["maskrcnn"]["min_object_area"],
        )
        workers = loader_workers(self.params["workers"], self.device)
        return DataLoader(
            ds,
            batch_size=self.params["batch_size"],
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if workers else None,
        )

    def batches(self, epoch: int, rng: np.random.Generator) -> DataLoader:
        p = self.params
        specs = random_crops(
            self.source,
            p["steps_per_epoch"] * p["batch_size"],
            self.tile,
            rng,
            p["maskrcnn"]["object_crops"],
        )
        return self.loader(specs, augment=True)

    def _losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, targets = batch
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
        with autocast(self.device, self.amp):
            losses = model(images, targets)
        losses = {k: v.float() for k, v in losses.items()}
        return {"loss": sum(losses.values()), **losses}

    def step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        return self._losses(model, batch)

    def val_losses(self, model: nn.Module) -> dict[str, float]:
        """Mean loss terms over the validation tiles.

        The losses need training mode; batch norm is kept in eval mode (running statistics
        untouched) and the proposal sampling uses a fixed seed without disturbing the
        training random stream, so the score is reproducible.
        """
        sums: dict[str, float] = {}
        n = 0
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        model.train()
        for bn in bns:
            bn.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(VAL_SEED)
            for batch in self.loader(self.val_specs, augment=False):
                for k, v in self._losses(model, batch).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n += 1
        model.train()
        return {k: v / max(n, 1) for k, v in sums.items()}

    def val_detections(self, model: nn.Module) -> dict[str, float]:
        """Mask AP50, AP@[.5:.95] and F1@0.5 of the validation tiles.

        Each tile is predicted in eval mode (detections scoring >= 0.5, mask probability
        > 0.5, painted highest score on top) and scored against the tile's true instances
        with the instance metrics of ``dlpipe evaluate --instances``.
        """
        t = self.tile
        ds = CropDataset(
            self.source, self.val_specs, t, None, self.params["maskrcnn"]["min_object_area"]
        )
        bs = max(1, int(self.params["batch_size"]))
        items = []
        model.eval()
        with torch.no_grad():
            for b in range(0, len(ds.specs), bs):
                samples = [ds.sample(spec) for spec in ds.specs[b : b + bs]]
                images = [
                    torch.from_numpy(np.repeat(img, 3, 0) if img.shape[0] == 1 else img).to(
                        self.device
                    )
                    for img, _, _ in samples
                ]
                with autocast(self.device, self.amp):
                    outs = model(images)
                for (_, sem, inst), out in zip(samples, outs, strict=True):
                    keep = out["scores"] >= 0.5
                    masks = (out["masks"][keep, 0] > 0.5).cpu().numpy()
                    dets = [
                        Detection(int(lab), float(sc), 0, 0, mk, (0, 0, t, t))
                        for lab, sc, mk in zip(
                            out["labels"][keep].tolist(),
                            out["scores"][keep].tolist(),
                            masks,
                            strict=True,
                        )
                        if mk.any()
                    ]
                    p_inst, p_sem, rows = paint_instances(dets, (t, t))
                    items.append(
                        (p_inst, p_sem, inst, sem, {r["instance_id"]: r["score"] for r in rows})
                    )
        model.train()
        overall = evaluate_instance_images(items, self.classes)["overall"]
        return {
            "val_ap50": float(overall["ap50"]),
            "val_ap": float(overall["ap"]),
            "val_f1": float(overall["f1"]),
        }

    def validate(self, model: nn.Module) -> tuple[float | None, dict[str, float]]:
        if not self.val_specs:
            return None, {"val_loss": float("nan")} | {
                f"val_{k}": float("nan") for k in LOSS_TERMS
            } | {"val_ap50": float("nan"), "val_ap": float("nan"), "val_f1": float("nan")}
        means = self.val_losses(model)
        row = {"val_loss": means.pop("loss")}
        row.update({f"val_{k}": v for k, v in means.items()})
        row.update(self.val_detections(model))
        return monitor_score(row, self.monitor), row

    def summary(self, row: Mapping[str, Any]) -> str:
        terms = ", ".join(
            f"{k[5:]} {row[f'train_{k}']:.3f}" for k in LOSS_TERMS if f"train_{k}" in row
        )
        return (
            f"{terms}; val loss {row['val_loss']:.4f}, AP50 {row['val_ap50']:.3f}, "
            f"F1 {row['val_f1']:.3f}"
        )

    def plots(self, folder: Path, history: list[dict[str, Any]], model: nn.Module) -> list[Path]:
        return save_instance_plots(folder, history, self, model)

    def card(self, best_row: Mapping[str, Any]) -> dict[str, Any]:
        p, src = self.params, self.source
        names = src.image_names or [str(i) for i in range(src.n)]
        return {
            "model": "maskrcnn",
            "architecture": self.architecture,
            "input": "2d",
            "tile_size": self.tile,
            "patch_size": [self.tile, self.tile],
            "classes": self.classes,
            **card_channels(src.channels),
            "preset": p["maskrcnn"].get("preset") or "cpu",
            "pixel_size": self.pixel_size["model"],
            "training_pixel_size": self.pixel_size["data"],
            "training_scale": src.scale,
            "preset_applied": self.preset_applied,
            "normalisation": {"p0_1": src.p0_1, "p99_9": src.p99_9},
            "min_object_area": p["maskrcnn"]["min_object_area"],
            "pretrained": p["maskrcnn"]["pretrained"],
            "val_loss": best_row.get("val_loss"),
            "val_ap50": best_row.get("val_ap50"),
            "val_f1": best_row.get("val_f1"),
            "val_losses": {k: best_row.get(f"val_{k}") for k in LOSS_TERMS},
            "split": {"train": [names[i] for i in src.train], "val": [names[i] for i in src.val]},
        }
