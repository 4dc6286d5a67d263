"""Benchmark `dlpipe tile` against the zarr-from-memory ceiling and the naive dask route.

A (Z, 1024, 1024) uint8 volume (Z = 2048 for the issue's 2 GiB) is written once as a
contiguous multi-page TIFF and as raw. Each contender then runs in a fresh Python process
(so that its peak RSS is its own) and writes level 0 with the same chunks and codec:

* ceiling  zarr-python writes the array already in memory (loading is not timed)
* dask     ``dask.array.from_array(tifffile.memmap(tif)).to_zarr(...)``
* tile     ``dlpipe.volumes.tile_volume`` from the TIFF and from raw, one level
           (same output as the others) and, for information, the default 3 levels

Throughput is input bytes per wall second; ratios are against the ceiling. The input
files stay in the page cache between runs (23 GiB RAM), so reads are memory-speed for all.

Usage::

    python benchmarks/tile.py --z 2048 --workdir /tmp/dlpipe-bench-tile
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPE_YX = (1024, 1024)
CHUNKS = (64, 64, 64)
CLEVEL = 3


def make_inputs(work: Path, nz: int) -> tuple[Path, Path]:
    """A CT-like uint8 volume (smooth structure + noise) as TIFF and raw, slab by slab."""
    import tifffile

    tif, raw = work / "vol.tif", work / "vol.raw"
    if tif.exists() and raw.exists() and raw.stat().st_size == nz * SHAPE_YX[0] * SHAPE_YX[1]:
        return tif, raw
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : SHAPE_YX[0], 0 : SHAPE_YX[1]].astype(np.float32)
    base = 100 + 40 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    with tifffile.TiffWriter(tif, bigtiff=True) as tw, open(raw, "wb") as fr:
        for z0 in range(0, nz, 64):
            n = min(64, nz - z0)
            zz = np.arange(z0, z0 + n, dtype=np.float32)[:, None, None]
            slab = base[None] + 30 * np.sin(zz / 17.0 + xx[None] / 40.0)
            slab += rng.normal(0, 12, size=slab.shape).astype(np.float32)
            slab = np.clip(slab, 0, 255).astype(np.uint8)
            for page in slab:
                tw.write(page, contiguous=True)
            slab.tofile(fr)
    return tif, raw


def _peak_rss_mb() -> float:
    """High-water resident set of this process (VmHWM: reset at exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(name: str, work: Path, nz: int) -> dict:
    """Run one contender in this (fresh) process; return seconds and peak RSS."""
    import zarr
    from zarr.codecs import ZstdCodec

    out = work / f"{name}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    shape = (nz, *SHAPE_YX)
    t0 = time.perf_counter()
    if name == "ceiling":
        vol = np.fromfile(work / "vol.raw", dtype=np.uint8).reshape(shape)
        t0 = time.perf_counter()  # loading is not timed
        arr = zarr.create_array(
            out,
            shape=shape,
            chunks=CHUNKS,
            dtype=np.uint8,
            compressors=ZstdCodec(level=CLEVEL),
            fill_value=0,
        )
        arr[:] = vol
    elif name == "dask":
        import dask.array as da
        import tifffile

        darr = da.from_array(tifffile.memmap(work / "vol.tif", mode="r"), chunks=CHUNKS)
        darr.to_zarr(str(out), compressors=ZstdCodec(level=CLEVEL), zarr_format=3)
    else:
        from dlpipe.volumes import tile_volume

        kind, levels = name.split("_")[1], int(name.split("_")[2][1:])
        src = work / ("vol.tif" if kind == "tiff" else "vol.raw")
        raw = {"shape": shape, "dtype": "uint8"} if kind == "raw" else None
        tile_volume(
            src,
            out,
            raw=raw,
            overwrite=True,
            progress=False,
            params={
                "chunks": list(CHUNKS),
                "levels": levels,
                "clevel": CLEVEL,
                "codec": "zstd",
                "memory_budget_mb": 1024,
            },
        )
    seconds = time.perf_counter() - t0
    rss_mb = _peak_rss_mb()
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    shutil.rmtree(out, ignore_errors=True)
    return {"name": name, "seconds": seconds, "peak_rss_mb": rss_mb, "out_mb": size_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--z", type=int, default=2048, help="slices of 1024x1024 (2048 = 2 GiB)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dlpipe-bench-tile"))
    ap.add_argument("--only", nargs="*", default=None, help="contenders to run")
    ap.add_argument("--keep", action="store_true", help="keep the input files")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.workdir, args.z)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    make_inputs(args.workdir, args.z)
    gib = args.z * SHAPE_YX[0] * SHAPE_YX[1] / 2**30
    print(
        f"input: {args.z}x{SHAPE_YX[0]}x{SHAPE_YX[1]} uint8 = {gib:.2f} GiB "
        f"(made in {time.perf_counter() - t:.0f} s); chunks {CHUNKS}, zstd level {CLEVEL}"
    )
    names = args.only or ["ceiling", "dask", "tile_tiff_L1", "tile_raw_L1", "tile_tiff_L3"]
    results = {}
    for name in names:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--z",
                str(args.z),
                "--workdir",
                str(args.workdir),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    ceiling = results.get("ceiling")
    print(
        f"{'contender':<14} {'seconds':>8} {'MiB/s':>8} {'vs ceiling':>10} "
        f"{'peak RSS MiB':>12} {'out MiB':>8}"
    )
    for name, r in results.items():
        mbs = gib * 1024 / r["seconds"]
        ratio = f"{ceiling['seconds'] / r['seconds']:.2f}x" if ceiling else "-"
        print(
            f"{name:<14} {r['seconds']:>8.1f} {mbs:>8.0f} {ratio:>10} "
            f"{r['peak_rss_mb']:>12.0f} {r['out_mb']:>8.0f}"
        )
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
