"""Training a U-Net on a Zarr volume: the loop, checkpoints, early stopping, outputs."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dlpipe import __version__
from dlpipe._io import atomic_path, write_text_atomic
from dlpipe.errors import UserError
from dlpipe.models import UNet, count_parameters
from dlpipe.training.augment import Augment
from dlpipe.training.data import (
    MODES,
    LabelIndex,
    PatchDataset,
    PatchSampler,
    max_label,
    scan_labels,
)
from dlpipe.training.losses import make_loss
from dlpipe.training.metrics import confusion, jaccard, mean_jaccard
from dlpipe.training.stores import TrainingSource, open_source

log = logging.getLogger(__name__)

OPTIMISERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")
# Keys that may change between a run and its --resume.
RESUMABLE_CHANGES = {"epochs", "max_minutes", "workers", "device", "patience", "amp"}


class NaNLossError(UserError):
    """The training loss became NaN or infinite."""


def _check(params: Mapping[str, Any]) -> None:
    if params["model"] != "unet":
        raise UserError(f"train.model {params['model']!r} is not handled by the U-Net trainer")
    if params["input"] not in MODES:
        raise UserError(f"unknown input {params['input']!r} (one of {', '.join(MODES)})")
    if params["optimizer"] not in OPTIMISERS:
        raise UserError(f"unknown optimizer {params['optimizer']!r} ({', '.join(OPTIMISERS)})")
    if params["schedule"] not in SCHEDULES:
        raise UserError(f"unknown schedule {params['schedule']!r} ({', '.join(SCHEDULES)})")
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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA device is available")
    return torch.device(name)


def _optimiser(params: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    lr, wd = params["lr"], params["weight_decay"]
    if params["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if params["optimizer"] == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=params["momentum"], weight_decay=wd, nesterov=True
    )


def _scheduler(params: Mapping[str, Any], opt: torch.optim.Optimizer) -> Any:
    kind = params["schedule"]
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, params["epochs"]))
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(
            opt, step_size=params["step_size"], gamma=params["step_gamma"]
        )
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=params["step_gamma"], patience=params["step_size"]
        )
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)


class Trainer:
    """Everything a run needs, built from the store and the ``train`` config section."""

    def __init__(self, store: str | Path, params: Mapping[str, Any]) -> None:
        _check(params)
        self.params = dict(params)
        p = self.params
        self.source: TrainingSource = open_source(
            store, labels=p["labels"], classes=p["classes"], val_fraction=p["val_fraction"],
            max_images=p.get("max_images"), ignore_index=p["ignore_index"],
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
        if self.train_counts.sum() == 0:
            raise UserError(
                f"empty training set: no labelled voxel in the training range z {list(src.train)}",
                path=src.path,
            )
        freq = self.train_counts / self.train_counts.sum()
        self.rare = [
            int(c) for c in range(len(self.classes))
            if 0 < freq[c] < p["rare_fraction"]
        ]
        self.sampler = PatchSampler(
            self.index, src.shape, self.mode, self.patch, p["oversample"], self.rare
        )
        self.val_specs = self.sampler.grid(src.val)
        if p["val_max_patches"] and len(self.val_specs) > p["val_max_patches"]:
            pick = np.linspace(0, len(self.val_specs) - 1, p["val_max_patches"]).round()
            self.val_specs = [self.val_specs[int(i)] for i in pick]
        self.monitor = "val_mean_jaccard" if self.val_specs else "train_loss"
        if not self.val_specs:
            log.warning(
                "train: no labelled voxel in the validation range z %s; the best checkpoint "
                "and early stopping follow the training loss instead", list(src.val)
            )
        self.augment = Augment(**p["augment"])
        self.context = p["context_slices"] if self.mode == "2.5d" else 1
        self.architecture = dict(p["architecture"])
        self.architecture.update(
            dim=3 if self.mode == "3d" else 2,
            in_channels=self.context,
            n_classes=len(self.classes),
        )
        self.device = _device(p["device"])
        self.amp = bool(p["amp"]) and self.device.type == "cuda"

    # ------------------------------------------------------------------ pieces
    def build(self) -> tuple[UNet, torch.nn.Module, torch.optim.Optimizer, Any]:
        torch.manual_seed(self.params["seed"])
        model = UNet(**self.architecture).to(self.device)
        loss = make_loss(
            self.params["loss"],
            n_classes=len(self.classes),
            class_weights=self.params["class_weights"],
            class_counts=self.train_counts.tolist(),
            focal_gamma=self.params["focal_gamma"],
            ignore_index=self.params["ignore_index"],
        ).to(self.device)
        opt = _optimiser(self.params, model)
        return model, loss, opt, _scheduler(self.params, opt)

    def loader(self, specs: list, augment: bool, generator: torch.Generator | None = None):
        ds = PatchDataset(
            self.source, specs, self.mode, self.patch, self.context,
            self.augment if augment else None,
        )
        workers = int(self.params["workers"])
        return DataLoader(
            ds,
            batch_size=self.params["batch_size"],
            shuffle=False,
            num_workers=workers,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
            generator=generator,
        )

    def autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

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


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(path: Path, obj: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(buf.getvalue())


def _write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, out.getvalue())


def _finite(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _comparable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in RESUMABLE_CHANGES}


def train_unet(
    store: str | Path,
    out_dir: str | Path,
    params: Mapping[str, Any],
    *,
    run: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train a U-Net on a tiled Zarr volume (or a CVAT dataset Zarr) and write a model card.

    Parameters
    ----------
    store : ``VOL.zarr`` (image ``0``, labels ``labels/<name>/0``, split and statistics in the
        ``dlpipe`` attribute) or a CVAT dataset Zarr (``images``, ``semantic``)
    out_dir : model folder: ``weights.pt``, ``card.json``, ``metrics.csv``, ``plots/``,
        ``checkpoints/{last,best}.pt``; ``card.json`` is written last
    params : the ``train`` config section
    run : a :class:`dlpipe.tracking.StageRun` (metrics per epoch, plots, card as artifacts)
    resume : continue from ``checkpoints/last.pt`` (same settings; ``epochs`` may grow)
    overwrite : replace an existing model folder

    Returns
    -------
    dict
        The model card.

    Raises
    ------
    UserError
        Bad input (see docs/training.md); :class:`NaNLossError` when the loss stops being
        finite (the last good checkpoint stays in place).
    """
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if resume:
        if not last_path.exists():
            raise UserError("nothing to resume: no checkpoints/last.pt", path=out)
    elif out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError("model folder exists (use --overwrite or --resume)", path=out)
        if not ((out / "card.json").exists() or ckpt_dir.exists()):
            raise UserError("refusing to overwrite a folder that is not a model folder", path=out)
        shutil.rmtree(out)
    trainer = Trainer(store, params)
    p = trainer.params
    torch.use_deterministic_algorithms(trainer.device.type == "cpu", warn_only=True)
    model, loss_fn, opt, sched = trainer.build()
    n_params = count_parameters(model)
    log.info(
        "train: %s U-Net, %d parameters, %s, classes %s, rare %s, %d val patches",
        trainer.mode, n_params, trainer.device, trainer.classes,
        [trainer.classes[c] for c in trainer.rare], len(trainer.val_specs),
    )
    history: list[dict[str, Any]] = []
    start, best_score, best_epoch, bad_epochs = 0, -math.inf, -1, 0
    if resume:
        ck = torch.load(last_path, map_location=trainer.device, weights_only=True)
        old = json.loads(ck["params"])
        if _comparable(old) != _comparable(p):
            diff = sorted(k for k in set(old) | set(p) if old.get(k) != p.get(k)
                          and k not in RESUMABLE_CHANGES)
            raise UserError(
                f"--resume with different settings ({', '.join(diff)}); only "
                f"{', '.join(sorted(RESUMABLE_CHANGES))} may change",
                path=last_path,
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"])
        start, best_score, best_epoch = ck["epoch"], ck["best_score"], ck["best_epoch"]
        bad_epochs, history = ck["bad_epochs"], json.loads(ck["history"])
        log.info("train: resuming after epoch %d (best %.4f at %d)", start, best_score, best_epoch)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir.mkdir(exist_ok=True)
    t_start = time.perf_counter()
    stop_reason = "epochs"
    steps = p["steps_per_epoch"]
    for epoch in range(start, p["epochs"]):
        t_epoch = time.perf_counter()
        rng = np.random.default_rng([p["seed"], epoch])
        specs = trainer.sampler.epoch(steps * p["batch_size"], trainer.source.train, rng)
        model.train()
        running, seen = 0.0, 0
        bar = tqdm(
            trainer.loader(specs, augment=True),
            total=steps,
            desc=f"epoch {epoch + 1}/{p['epochs']}",
            disable=None if progress is None else not progress,
            leave=False,
        )
        for step, (img, mask) in enumerate(bar):
            img = img.to(trainer.device, non_blocking=True)
            mask = mask.to(trainer.device, non_blocking=True)
            with trainer.autocast():
                logits = model(img)
            loss = loss_fn(logits.float(), mask)
            if not torch.isfinite(loss):
                kept = (
                    f"the last good checkpoint is {last_path} (epoch {epoch})"
                    if last_path.exists()
                    else "no checkpoint was written yet"
                )
                raise NaNLossError(
                    f"training loss is {float(loss.detach())} at epoch {epoch + 1}, "
                    f"step {step + 1}; "
                    f"stopped ({kept}); check the input values, lower train.lr or the loss weights",
                    path=out,
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach())
            seen += 1
            bar.set_postfix(loss=f"{running / seen:.4f}")
        bar.close()
        train_loss = running / max(seen, 1)
        if trainer.val_specs:
            val_loss, cm = trainer.evaluate(model, loss_fn)
            per = jaccard(cm)
            mean = mean_jaccard(cm)
            score = mean
        else:
            val_loss, per, mean = float("nan"), np.full(len(trainer.classes), np.nan), math.nan
            score = -train_loss
        if p["schedule"] == "plateau":
            sched.step(score)
        else:
            sched.step()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": train_loss,
            "val_loss": val_loss,
        }
        row.update({f"val_jaccard_{c}": float(v) for c, v in zip(trainer.classes, per,
                                                                  strict=True)})
        row["val_mean_jaccard"] = mean
        row["seconds"] = time.perf_counter() - t_epoch
        history.append(row)
        improved = score > best_score + p["min_delta"]
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch + 1, 0
        else:
            bad_epochs += 1
        state = {
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": _rng_state(),
            "best_score": best_score,
            "best_epoch": best_epoch,
            "bad_epochs": bad_epochs,
            "history": json.dumps(history),
            "params": json.dumps(p, sort_keys=True),
        }
        if improved:
            _save(best_path, state)
        _save(last_path, state)
        _write_csv(out / "metrics.csv", history)
        if run is not None:
            run.log_metrics({k: v for k, v in row.items() if k != "epoch" and np.isfinite(v)},
                            step=epoch + 1)
        log.info(
            "epoch %d: loss %.4f, val loss %.4f, val mean Jaccard %.4f%s",
            epoch + 1, train_loss, val_loss, mean, " (best)" if improved else "",
        )
        if bad_epochs >= p["patience"]:
            stop_reason = f"early stopping (no improvement of {trainer.monitor} in "
            stop_reason += f"{p['patience']} epochs)"
            break
        if p["max_minutes"] and (time.perf_counter() - t_start) / 60 >= p["max_minutes"]:
            stop_reason = f"time budget of {p['max_minutes']} min"
            break
    log.info("train: stopped after epoch %d: %s", len(history), stop_reason)
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in best["model"].items()}, buf)
    with atomic_path(out / "weights.pt", overwrite=True) as tmp:
        tmp.write_bytes(buf.getvalue())
    from dlpipe.training.plots import save_plots

    figures = save_plots(out / "plots", history, trainer, model)
    best_row = history[best_epoch - 1] if 0 < best_epoch <= len(history) else {}
    card = {
        "model": "unet",
        "architecture": trainer.architecture,
        "input": trainer.mode,
        "context_slices": trainer.context,
        "patch_size": list(trainer.patch),
        "classes": trainer.classes,
        "normalisation": {"p0_1": trainer.source.p0_1, "p99_9": trainer.source.p99_9},
        "ignore_index": p["ignore_index"],
        "parameters": n_params,
        "weights": "weights.pt",
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stop_reason": stop_reason,
        "monitor": trainer.monitor,
        "val_jaccard": {c: best_row.get(f"val_jaccard_{c}") for c in trainer.classes},
        "val_mean_jaccard": best_row.get("val_mean_jaccard"),
        "training_data": str(Path(store).resolve()),
        "split": {"train": list(trainer.source.train), "val": list(trainer.source.val)},
        "train_class_counts": trainer.train_counts.tolist(),
        "rare_classes": [trainer.classes[c] for c in trainer.rare],
        "loss": p["loss"],
        "seed": p["seed"],
        "device": str(trainer.device),
        "dlpipe_version": __version__,
        "params": p,
    }
    card = _finite(card)
    write_text_atomic(out / "card.json", json.dumps(card, indent=2) + "\n")
    if run is not None:
        run.log_metrics({"parameters": n_params, "best_epoch": best_epoch})
        run.log_artifact(out / "metrics.csv")
        for fig in figures:
            run.log_artifact(fig, "plots")
        run.log_artifact(out / "card.json")
    return card
