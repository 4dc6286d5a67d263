"""Evaluate a prediction against truth from Zarr vs merely reading both arrays (same run).

Target (issue 7): evaluation at >= 0.5x the rate of reading both arrays.

    python benchmarks/evaluate.py --size 1024 --chunk 128     # 1 Gvoxel
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from scipy import ndimage

from dlpipe.evaluation import confusion_matrix, evaluate_arrays


def _make(root: Path, size: int, chunk: int) -> tuple[zarr.Array, zarr.Array]:
    """Truth and prediction (uint8, 3 phases) built from a few distinct blocks."""
    rng = np.random.default_rng(0)
    shape = (size,) * 3
    t = zarr.create_array(str(root / "truth.zarr"), shape=shape, chunks=(chunk,) * 3, dtype="uint8")
    p = zarr.create_array(str(root / "pred.zarr"), shape=shape, chunks=(chunk,) * 3, dtype="uint8")
    blocks = []
    for _ in range(4):
        s = ndimage.gaussian_filter(rng.random((chunk,) * 3, np.float32), 2.0)
        tb = np.digitize(s, np.quantile(s, [0.7, 0.97])).astype(np.uint8)
        pb = np.where(rng.random(tb.shape) < 0.03, rng.integers(0, 3, tb.shape), tb)
        blocks.append((tb, pb.astype(np.uint8)))
    n = size // chunk
    for i, (z, y, x) in enumerate(np.ndindex(n, n, n)):
        tb, pb = blocks[i % 4]
        sl = tuple(slice(c * chunk, (c + 1) * chunk) for c in (z, y, x))
        t[sl] = tb
        p[sl] = pb
    return p, t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: temp)")
    ap.add_argument("--error-blobs", action="store_true", help="also time the error blobs")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        t0 = time.perf_counter()
        pred, truth = _make(root, args.size, args.chunk)
        print(f"wrote {args.size}^3 x 2 in {time.perf_counter() - t0:.1f} s")
        # floor: read both arrays, slab by slab (same slabs as the evaluation)
        t0 = time.perf_counter()
        total = 0
        for z in range(0, args.size, args.chunk):
            total += np.asarray(pred[z : z + args.chunk]).size
            total += np.asarray(truth[z : z + args.chunk]).size
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        cm = confusion_matrix(pred, truth, n_classes=3, progress=False)
        t_eval = time.perf_counter() - t0
        assert cm.sum() == args.size**3
        vox = args.size**3
        print(f"read both arrays : {t_read:7.2f} s  ({vox / t_read / 1e6:7.1f} Mvoxel/s)")
        print(f"confusion matrix : {t_eval:7.2f} s  ({vox / t_eval / 1e6:7.1f} Mvoxel/s)")
        print(f"rate ratio evaluate/read = {t_read / t_eval:.2f} (target >= 0.5)")
        if not args.error_blobs:
            return
        t0 = time.perf_counter()
        params = {
            "classes": ["a", "b", "c"],
            "ignore_index": 255,
            "error_blobs": True,
            "connectivity": 26,
        }
        res = evaluate_arrays(pred, truth, params, progress=False)
        t_full = time.perf_counter() - t0
        print(
            f"with error blobs : {t_full:7.2f} s  (ratio {t_read / t_full:.2f}); "
            f"mean Jaccard {res['mean_jaccard']:.4f}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
