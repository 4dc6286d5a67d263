"""Accuracy of U-Net training on the demo data and on ISBI 2012 (see benchmarks/RESULTS.md).

demo: ``dlpipe synth`` defaults; labels kept only on the CVAT-annotated slices (everything else
      255), trained 2D within a time budget, evaluated on the test slab (z 53-63) against the
      exact labels: per-phase Jaccard, compared with the targets 0.97 / 0.93 / 0.75.
isbi: ../shared/data/isbi2012 (30 TEM slices), train 0-19, val 20-24, test 25-29; pixel error
      and membrane Jaccard on the test slices, compared with the target pixel error 0.08.

Usage::

    python benchmarks/accuracy.py demo --minutes 12
    python benchmarks/accuracy.py isbi --minutes 12
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dlpipe.config import defaults
from dlpipe.models import build_unet
from dlpipe.training import (
    confusion,
    jaccard,
    pixel_error,
    sparse_labels_from_demo,
    train,
    write_labelled_volume,
)

ROOT = Path(__file__).resolve().parents[1]


def predict_slices(model_dir: Path, image: np.ndarray) -> np.ndarray:
    """Argmax labels (Z, Y, X) of whole slices with a 2D/2.5D model card."""
    card = json.loads((model_dir / "card.json").read_text())
    net = build_unet(card["architecture"])
    net.load_state_dict(torch.load(model_dir / "weights.pt", weights_only=True))
    net.eval()
    p0, p1 = card["normalisation"]["p0_1"], card["normalisation"]["p99_9"]
    k = card["context_slices"]
    x = (image.astype(np.float32) - p0) / (p1 - p0)
    nz = x.shape[0]
    out = np.zeros(x.shape, np.uint8)
    with torch.no_grad():
        for z in range(nz):
            idx = np.clip(np.arange(z - k // 2, z + k // 2 + 1), 0, nz - 1)
            out[z] = net(torch.from_numpy(x[idx])[None]).argmax(1)[0].numpy()
    return out


def params(minutes: float, **over) -> dict:
    p = defaults()["train"]
    p.update(
        epochs=10_000,
        steps_per_epoch=25,
        batch_size=8,
        patch_size=[64, 64],
        workers=1,
        device="cpu",
        max_minutes=minutes,
        schedule="constant",
        patience=10_000,
        val_max_patches=16,
    )
    p["architecture"].update(depth=4, base_filters=16)
    p.update(over)
    return p


def demo(args: argparse.Namespace, work: Path) -> dict:
    from dlpipe.synth import make_demo

    demo_dir = work / "demo"
    make_demo(demo_dir, defaults()["synth"])
    volume, sparse, slices = sparse_labels_from_demo(demo_dir)
    import tifffile

    exact = tifffile.imread(demo_dir / "labels.tif")
    nz = volume.shape[0]
    split = {
        "train": [0, round(0.7 * nz)],
        "val": [round(0.7 * nz) + 2, round(0.8 * nz)],
        "test": [round(0.8 * nz) + 2, nz],
        "gap": 2,
    }
    store = write_labelled_volume(
        work / "demo.zarr",
        volume,
        sparse,
        split=split,
        classes=["matrix", "fibre", "pore"],
        chunks=(8, 64, 64),
    )
    p = params(args.minutes, loss={"ce": 1.0, "dice": 1.0}, lr=2e-3)
    t0 = time.perf_counter()
    card = train(store, work / "model", p)
    train_s = time.perf_counter() - t0
    z0, z1 = split["test"]
    pred = predict_slices(work / "model", volume[z0:z1])
    cm = confusion(torch.from_numpy(pred), torch.from_numpy(exact[z0:z1]), 3)
    j = jaccard(cm)
    targets = [0.97, 0.93, 0.75]
    res = {
        "dataset": "demo (synth defaults 64x128x128)",
        "annotated_slices": slices,
        "train_minutes": train_s / 60,
        "epochs": card["epochs_run"],
        "steps": card["epochs_run"] * p["steps_per_epoch"],
        "parameters": card["parameters"],
        "test_slab": [z0, z1],
        "jaccard": dict(zip(card["classes"], j.tolist(), strict=True)),
        "targets": dict(zip(card["classes"], targets, strict=True)),
        "ratio_to_target": {
            c: float(v / t) for c, v, t in zip(card["classes"], j, targets, strict=True)
        },
        "pixel_error": pixel_error(cm),
    }
    return res


def isbi(args: argparse.Namespace, work: Path) -> dict:
    from PIL import Image

    src = ROOT.parent / "shared" / "data" / "isbi2012" / "train"
    image = np.stack([np.asarray(Image.open(src / "image" / f"{i}.png")) for i in range(30)])
    raw = np.stack([np.asarray(Image.open(src / "label" / f"{i}.png")) for i in range(30)])
    labels = (raw < 128).astype(np.uint8)  # 1 = membrane (label 0), 0 = cell interior (255)
    split = {"train": [0, 20], "val": [20, 25], "test": [25, 30], "gap": 0}
    store = write_labelled_volume(
        work / "isbi.zarr",
        image,
        labels,
        split=split,
        classes=["cell", "membrane"],
        chunks=(1, 256, 256),
    )
    p = params(
        args.minutes,
        patch_size=[128, 128],
        batch_size=4,
        lr=1e-3,
        loss={"ce": 1.0, "dice": 0.5},
        oversample=0.0,
    )
    t0 = time.perf_counter()
    card = train(store, work / "model", p)
    train_s = time.perf_counter() - t0
    pred = predict_slices(work / "model", image[25:30])
    cm = confusion(torch.from_numpy(pred), torch.from_numpy(labels[25:30]), 2)
    err = pixel_error(cm)
    return {
        "dataset": "ISBI 2012 train set (30x512x512), test slices 25-29",
        "train_minutes": train_s / 60,
        "epochs": card["epochs_run"],
        "steps": card["epochs_run"] * p["steps_per_epoch"],
        "parameters": card["parameters"],
        "pixel_error": err,
        "membrane_jaccard": float(jaccard(cm)[1]),
        "target_pixel_error": 0.08,
        "ratio_target_over_error": 0.08 / err,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", choices=["demo", "isbi"])
    ap.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        res = (demo if args.dataset == "demo" else isbi)(args, Path(tmp))
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
