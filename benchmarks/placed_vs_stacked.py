"""2.5D and 3D U-Nets trained from annotations placed in the volume vs on the stacked images.

The demo (``dlpipe synth`` with ``config.yaml``'s synth section: 64x128x128, 10 annotated
z-slices) is tiled with its exact labels (``VOL.zarr/labels/phases``, used only to score)
and its CVAT export goes

* into the volume: ``dlpipe cvat EXPORT --volume VOL.zarr`` (``labels/annotations``);
  ``dlpipe train VOL.zarr --set labels="annotations"`` reads the real scan around each
  annotated slice (2.5D context, 3D boxes);
* into a dataset Zarr: ``dlpipe cvat EXPORT --out cvat.zarr``: the 10 annotated images
  stacked, their neighbours in the stack being the next annotated images.

Both arms train on the same slices: the stacked dataset's last 2 images validate, the 8
others train; the volume has dense labels, so its z-slabs split the placed slices the
same way (:func:`dlpipe.stores.annotations.split_by_slabs`: none in the test slab, the
last 2 validate). Same training settings and seeds: ``config.yaml``'s ``train`` section
(the shipped workflow's), 3D with the workflow's patch (``2**(depth-1)`` slices deep).
Each model predicts the whole volume (``dlpipe predict``) and is scored on the test slab of
the volume's split against the exact labels (``dlpipe evaluate``).

Usage::

    python benchmarks/placed_vs_stacked.py --work /tmp/pvs [--seeds 0 1] [--jobs 2]
        [--modes 2.5d 3d] [--sources placed stacked] [--set KEY=JSON ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

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
    out = work / "metrics" / f"{name}.json"
    if out.is_file():  # done by an earlier run of the script
        m = json.loads(out.read_text())
        card = json.loads((model / "card.json").read_text())
        seconds = None
    else:
        args = ["--input", mode, "--seed", seed, "--out", model, "--overwrite"]
        if source == "placed":
            args += ["--set", 'labels="annotations"']
        if mode == "3d":  # the workflow's 3D patch (common.smk: sweep_models)
            depth = cfg["train"].get("architecture", {}).get("depth", 4)
            patch = [2 ** (depth - 1), *cfg["train"].get("patch_size", [64, 64])]
            args += ["--set", f"patch_size={json.dumps(patch)}"]
        t0 = time.perf_counter()
        dlpipe(cfg, "train", store, *args)
        seconds = round(time.perf_counter() - t0)
        card = json.loads((model / "card.json").read_text())
        dlpipe(cfg, "predict", model, vol, "--out", pred, "--overwrite")
        dlpipe(cfg, "evaluate", pred, vol, "--out", out)
        m = json.loads(out.read_text())
    return {
        "mode": mode,
        "source": source,
        "seed": seed,
        "train_s": seconds,
        "best_epoch": card.get("best_epoch"),
        "test_slab": m["z_ranges"],
        **{f"J_{c}": v["jaccard"] for c, v in m["per_class"].items()},
        "J_mean": m["mean_jaccard"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--jobs", type=int, default=2, help="models trained at once")
    ap.add_argument("--modes", nargs="+", default=list(MODES))
    ap.add_argument("--sources", nargs="+", default=list(SOURCES))
    ap.add_argument("--set", nargs="*", default=[], help="train KEY=JSON over config.yaml's")
    args = ap.parse_args()
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    train = dict(shipped.get("train") or {})
    for item in args.set:
        key, _, value = item.partition("=")
        train[key] = json.loads(value)
    cfg = {"tracking": {"enabled": False}, "synth": shipped.get("synth") or {}, "train": train}
    args.work.mkdir(parents=True, exist_ok=True)
    vol, stacked = prepare(args.work, cfg)
    runs = [
        (source, mode, seed)
        for seed in args.seeds
        for mode in args.modes
        for source in args.sources
    ]

    def one(job: tuple[str, str, int]) -> dict:
        source, mode, seed = job
        store = vol if source == "placed" else stacked
        row = run_one(args.work, cfg, vol, store, source, mode, seed)
        print(json.dumps(row), flush=True)
        return row

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(one, runs))
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"train: {json.dumps(train, sort_keys=True)}")
    print("| model | trained on | seed | matrix | fibre | pore | mean Jaccard (test slab) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cls = [r.get(f"J_{c}") for c in ("matrix", "fibre", "pore")]
        cells = " | ".join("–" if v is None else f"{v:.3f}" for v in [*cls, r["J_mean"]])
        print(f"| {r['mode']} | {r['source']} | {r['seed']} | {cells} |")
    for mode in args.modes:
        for source in args.sources:
            js = [r["J_mean"] for r in rows if r["mode"] == mode and r["source"] == source]
            if js:
                print(f"mean {mode} {source}: {sum(js) / len(js):.3f} over {len(js)} seeds")


if __name__ == "__main__":
    main()
