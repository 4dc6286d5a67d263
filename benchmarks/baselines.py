"""Scores of the classical baselines on the demo data and on ISBI 2012.

Demo: `dlpipe.synth.make_demo` with the default config, trained on its annotated slices,
scored on the other slices. ISBI 2012 (../shared/data/isbi2012, 30 slices of 512 x 512,
labels 255 = cell interior, 0 = membrane): trained on slices 0-19, scored on 25-29.

    python benchmarks/baselines.py
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import zarr

from dlpipe.baselines import baseline
from dlpipe.config import defaults

ROOT = Path(__file__).resolve().parents[1]


def _isbi(data: Path, out: Path) -> tuple[Path, Path]:
    img = np.stack([iio.imread(data / "train/image" / f"{i}.png") for i in range(30)])
    lab = np.stack([iio.imread(data / "train/label" / f"{i}.png") for i in range(30)])
    lab = (lab > 127).astype(np.uint8)  # 0 membrane, 1 cell interior
    vol = zarr.create_array(
        str(out / "isbi_image.zarr"), shape=img.shape, chunks=(1, 512, 512), dtype="uint8"
    )
    vol[:] = img
    truth = zarr.create_array(
        str(out / "isbi_labels.zarr"), shape=lab.shape, chunks=(1, 512, 512), dtype="uint8"
    )
    truth[:] = lab
    return out / "isbi_image.zarr", out / "isbi_labels.zarr"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/isbi2012")
    args = ap.parse_args()
    cfg = defaults()
    tmp = Path(tempfile.mkdtemp())
    rows = []
    try:
        from dlpipe.synth import make_demo

        make_demo(tmp / "demo", cfg["synth"])
        for method in ("otsu", "rf"):
            t0 = time.perf_counter()
            r = baseline(
                tmp / "demo/volume.tif",
                tmp / "demo/labels.tif",
                tmp / f"d_{method}.zarr",
                tmp / f"d_{method}.json",
                cfg["baselines"],
                cfg["evaluation"],
                method=method,
                metadata=tmp / "demo/metadata.json",
            )
            rows.append(("demo (64x128x128)", method, r, time.perf_counter() - t0))
        if args.data.is_dir():
            image, labels = _isbi(args.data, tmp)
            ev = cfg["evaluation"] | {"classes": ["membrane", "cell"], "error_blobs": False}
            for method in ("otsu", "rf"):
                t0 = time.perf_counter()
                r = baseline(
                    image,
                    labels,
                    tmp / f"i_{method}.zarr",
                    tmp / f"i_{method}.json",
                    cfg["baselines"],
                    ev,
                    method=method,
                    slices=list(range(20)),
                    z_range=(25, 30),
                )
                rows.append(("ISBI 2012 (test z 25-29)", method, r, time.perf_counter() - t0))
        else:
            print(f"ISBI 2012 not found at {args.data}: skipped")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("| data | method | " + " | ".join(["per-class Jaccard", "mean Jaccard", "time"]) + " |")
    print("|---|---|---|---|---|")
    for data, method, r, dt in rows:
        per = ", ".join(f"{k} {v['jaccard']:.3f}" for k, v in r["per_class"].items())
        print(f"| {data} | {method} | {per} | {r['mean_jaccard']:.3f} | {dt:.0f} s |")


if __name__ == "__main__":
    main()
