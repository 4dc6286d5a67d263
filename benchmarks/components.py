"""Chunked connected components vs scipy.ndimage.label on the in-memory array (same run).

Target (issue 7): <= 2.5x the time of scipy.ndimage.label, the same number of components,
and peak memory bounded by the chunk size (not the volume) when reading from Zarr.

    python benchmarks/components.py --size 512 --chunk 128
    python benchmarks/components.py --size 768 --chunk 128 --rss   # Zarr source, ids not kept
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from dlpipe.postprocess import label_chunked, structure


def _volume(size: int, seed: int = 0) -> np.ndarray:
    """Pores (phase 2) and fibres-like blobs (phase 1) in matrix, uint8 (z, y, x)."""
    rng = np.random.default_rng(seed)
    small = ndimage.gaussian_filter(rng.random((size // 4,) * 3, np.float32), 1.5)
    s = ndimage.zoom(small, 4, order=1)
    return np.digitize(s, np.quantile(s[::4, ::4, ::4], [0.6, 0.95])).astype(np.uint8)


def _peak_mib() -> float:
    """Peak resident memory of this process (VmHWM; not inherited from the parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--connectivity", type=int, default=26)
    ap.add_argument("--rss", action="store_true", help="Zarr source, measure peak RSS only")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import zarr

        z = zarr.open_array(args.child, mode="r")
        before = _peak_mib()
        t0 = time.perf_counter()
        comp = label_chunked(z, [2], connectivity=args.connectivity, out=False, progress=False)
        dt = time.perf_counter() - t0
        after = _peak_mib()
        nbytes = int(np.prod(z.shape))
        print(
            f"Zarr {z.shape[0]}^3 ({nbytes / 2**20:.0f} MiB uint8), chunk {z.chunks[0]}^3: "
            f"{comp.count} components in {dt:.1f} s; peak RSS {before:.0f} MiB after imports, "
            f"{after:.0f} MiB after labelling (+{after - before:.0f} MiB; the volume is "
            f"{nbytes / 2**20:.0f} MiB, its uint32 ids {4 * nbytes / 2**20:.0f} MiB)"
        )
        return
    vol = _volume(args.size)
    if args.rss:
        import subprocess
        import sys

        import zarr

        root = Path(tempfile.mkdtemp())
        try:
            z = zarr.create_array(
                str(root / "v.zarr"), shape=vol.shape, chunks=(args.chunk,) * 3, dtype="uint8"
            )
            z[:] = vol
            del vol
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(root / "v.zarr"),
                    "--connectivity",
                    str(args.connectivity),
                ],
                check=True,
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    struct = structure(3, args.connectivity)
    for phase in (2, 1):
        t0 = time.perf_counter()
        _, n_ref = ndimage.label(vol == phase, struct)
        t_ref = time.perf_counter() - t0
        for sizes in (False, True):
            t0 = time.perf_counter()
            comp = label_chunked(
                vol,
                [phase],
                connectivity=args.connectivity,
                chunks=(args.chunk,) * 3,
                sizes=sizes,
                progress=False,
            )
            t_ours = time.perf_counter() - t0
            assert comp.count == n_ref, (comp.count, n_ref)
            print(
                f"phase {phase}: {n_ref} components; scipy.ndimage.label {t_ref:.2f} s, "
                f"chunked{' + sizes' if sizes else ''} {t_ours:.2f} s, "
                f"ratio {t_ours / t_ref:.2f} (target <= 2.5)"
            )


if __name__ == "__main__":
    main()
