"""Benchmark `dlpipe slices`: its cost must grow with the number of slices, not the volume.

Two CT-like uint8 volumes, N³ for each ``--sizes`` N (default 128 and 1024, i.e. 2 Mvoxel and
1 Gvoxel), are tiled once with ``dlpipe tile`` (default settings). ``dlpipe.annotations.
export_slices`` (what ``dlpipe slices`` runs) then writes 1, 4 and 16 slices along z, y and x
of each, timed in this process (start-up excluded; the CLI adds about 2 s), into a fresh task
folder each time. The table gives seconds per slice; the ratio column compares each size's
per-slice time with the smallest size's, so that the slice's own size (N² voxels) is the only
expected growth: a z-slice of 1024² has 64x the voxels of one of 128².

Usage::

    python benchmarks/slices.py --work /tmp/dlpipe-bench-slices [--sizes 128 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_volume(work: Path, n: int) -> Path:
    """``work/vol<n>.zarr``: an N³ uint8 scan (smooth structure + noise), tiled by dlpipe."""
    store = work / f"vol{n}.zarr"
    if (store / ".dlpipe_complete").is_file():
        return store
    raw = work / f"vol{n}.npy"
    vol = np.lib.format.open_memmap(raw, mode="w+", dtype=np.uint8, shape=(n, n, n))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    base = 100 + 40 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    for z0 in range(0, n, 64):
        k = min(64, n - z0)
        zz = np.arange(z0, z0 + k, dtype=np.float32)[:, None, None]
        slab = base[None] + 30 * np.sin(zz / 17.0 + xx[None] / 40.0)
        slab += rng.normal(0, 12, size=slab.shape).astype(np.float32)
        vol[z0 : z0 + k] = np.clip(slab, 0, 255).astype(np.uint8)
    vol.flush()
    del vol
    cmd = ["dlpipe", "--config-json", '{"tracking": {"enabled": false}}', "tile", str(raw)]
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--out", str(store)], check=True, env=os.environ | {"TQDM_DISABLE": "1"})
    print(f"tiled {n}^3 in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    raw.unlink()
    return store


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args(argv)
    from dlpipe.annotations import export_slices  # after the volumes exist: torch-free timing

    args.work.mkdir(parents=True, exist_ok=True)
    stores = {n: make_volume(args.work, n) for n in args.sizes}
    per_slice: dict[tuple[int, str, int], float] = {}
    print("| volume | axis | slices | seconds | s per slice | per slice / smallest volume's |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for n, store in stores.items():
        for axis in "zyx":
            for count in args.counts:
                out = args.work / f"task{n}{axis}{count}"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                export_slices(store, out, axes=[axis], count=count)
                dt = time.perf_counter() - t0
                per_slice[n, axis, count] = dt / count
                ratio = per_slice[n, axis, count] / per_slice[args.sizes[0], axis, count]
                print(f"| {n}³ | {axis} | {count} | {dt:.2f} | {dt / count:.3f} | {ratio:.1f} |")
                shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
