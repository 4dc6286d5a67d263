"""2.5D and 3D U-Nets trained from annotations placed in the volume vs on the stacked images.

The demo (``dlpipe synth``, 10 annotated z-slices as in ``config.yaml``) is tiled with its
exact labels (``VOL.zarr/labels/phases``, used only to score) and its CVAT export goes

* into the volume: ``dlpipe cvat EXPORT --volume VOL.zarr`` (``labels/annotations``);
  ``dlpipe train VOL.zarr --set labels="annotations"`` reads the real scan around each
  annotated slice (2.5D context, 3D boxes), holding out 2 test and 2 validation slices;
* into a dataset Zarr: ``dlpipe cvat EXPORT --out cvat.zarr`` (today's path): the 10
  annotated images stacked, their neighbours in the stack being the next annotated images
  (8 train, 2 validate).

Same training settings and seeds (``config.yaml``'s ``train`` values unless given), each
model predicts the whole volume (``dlpipe predict``) and is scored on the test slab of the
volume's split against the exact labels (``dlpipe evaluate``). The models trained from
the volume also get the annotation score (their 2 held-out test slices; what a user
without dense truth reads).

Usage::

    python benchmarks/placed_vs_stacked.py --work /tmp/pvs [--seeds 0 1] [--epochs 4]
        [--steps 40] [--val-patches 256] [--modes 2.5d 3d] [--sources placed stacked]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from dlpipe.evaluation import evaluate

SOURCES = ("placed", "stacked")
MODES = ("2.5d", "3d")


def dlpipe(cfg: dict, *args: object) -> None:
    """Run ``dlpipe --config-json CFG ARGS`` (fails loudly)."""
    cmd = [sys.executable, "-m", "dlpipe", "--log-level", "warning", "--config-json"]
    subprocess.run([*cmd, json.dumps(cfg), *map(str, args)], check=True)


def prepare(work: Path, cfg: dict) -> tuple[Path, Path]:
    """The demo tiled with its exact labels, its annotations placed; the stacked dataset."""
    demo, vol, stacked = work / "demo", work / "vol.zarr", work / "cvat.zarr"
    if not (vol / "labels" / "annotations").exists():
        dlpipe(cfg, "synth", demo, "--overwrite")
        dlpipe(cfg, "tile", demo / "volume.tif", "--labels", demo / "labels.tif", "--out", vol)
        xml = demo / "cvat" / "annotations.xml"
        dlpipe(cfg, "cvat", xml, "--images", demo / "cvat" / "images", "--out", stacked)
        dlpipe(cfg, "cvat", xml, "--volume", vol)
    return vol, stacked


def run_one(work: Path, cfg: dict, vol: Path, store: Path, source: str, mode: str, seed: int):
    """Train, predict and score one model; its scores."""
    name = f"{mode.replace('.', '_')}_{source}_s{seed}"
    model, pred = work / "models" / name, work / "pred" / f"{name}.zarr"
    args = ["--input", mode, "--seed", seed, "--out", model, "--overwrite"]
    if source == "placed":
        args += ["--set", 'labels="annotations"']
    if mode == "3d":
        args += ["--set", "patch_size=[8, 64, 64]"]  # the workflow's 3D patch (depth 4)
    t0 = time.perf_counter()
    dlpipe(cfg, "train", store, *args)
    seconds = time.perf_counter() - t0
    dlpipe(cfg, "predict", model, vol, "--out", pred, "--overwrite")
    out = work / "metrics" / f"{name}.json"
    dlpipe(cfg, "evaluate", pred, vol, "--out", out)
    m = json.loads(out.read_text())
    row = {
        "mode": mode,
        "source": source,
        "seed": seed,
        "train_s": round(seconds),
        "test_slab": m["z_ranges"],
        **{f"J_{c}": v["jaccard"] for c, v in m["per_class"].items()},
        "J_mean": m["mean_jaccard"],
    }
    if source == "placed":
        params = {"labels_name": "phases", "overlays": 0}
        ann = evaluate(pred, vol, work / "metrics" / f"{name}_ann.json", params, annotations=True)
        row["annotation_score"] = ann["mean_jaccard"]
        row["test_slices"] = ann["test_slices"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--val-patches", type=int, default=256)
    ap.add_argument("--modes", nargs="+", default=list(MODES))
    ap.add_argument("--sources", nargs="+", default=list(SOURCES))
    args = ap.parse_args()
    cfg = {
        "tracking": {"enabled": False},
        "synth": {"annotated_slices": 10},
        "train": {
            "epochs": args.epochs,
            "steps_per_epoch": args.steps,
            "val_max_patches": args.val_patches,
        },
    }
    args.work.mkdir(parents=True, exist_ok=True)
    vol, stacked = prepare(args.work, cfg)
    rows = []
    for seed in args.seeds:
        for mode in args.modes:
            for source in args.sources:
                store = vol if source == "placed" else stacked
                rows.append(run_one(args.work, cfg, vol, store, source, mode, seed))
                print(json.dumps(rows[-1]), flush=True)
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))
    print("| model | trained on | seed | matrix | fibre | pore | mean | annotation score |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cls = [r.get(f"J_{c}") for c in ("matrix", "fibre", "pore")]
        ann = f"{r['annotation_score']:.3f}" if "annotation_score" in r else "–"
        cells = " | ".join("–" if v is None else f"{v:.3f}" for v in [*cls, r["J_mean"]])
        print(f"| {r['mode']} | {r['source']} | {r['seed']} | {cells} | {ann} |")


if __name__ == "__main__":
    main()
