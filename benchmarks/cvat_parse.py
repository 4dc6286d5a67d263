"""Benchmark: streaming CVAT parse + rasterisation against the lxml floor and the naive approach.

Generates a CVAT for images 1.1 export (default: 2,000 images of 1024 x 1024 with 200,000
shapes, half polygons, half rotated ellipses), then runs, each in its own process (so
peak RSS is its own):

floor     lxml.etree.iterparse over the file, clearing elements, nothing else
ours      dlpipe.annotations: CvatReader + rasterise_frame (semantic + instances in memory)
pipelined the same with the reader in a child process (BackgroundReader), as convert does
          for exports of 8 MB and more: parsing and painting overlap on two cores
convert   dlpipe.annotations.convert: the same, written to a Zarr group (masks only)
naive     xml.etree.ElementTree.parse of the whole file, skimage.draw.polygon / ellipse per
          shape, painted in z_order into semantic + instance arrays

and prints seconds, shapes per second, peak RSS and the ratios the issue names:
ours <= 2 x floor + rasterisation, naive / ours >= 3, peak RSS < 500 MB.

Usage:  python benchmarks/cvat_parse.py [--images 2000] [--shapes 200000] [--size 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def generate(path: Path, n_images: int, n_shapes: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per = n_shapes // n_images
    with open(path, "w") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n<version>1.1</version>\n')
        f.write("<meta><task><mode>annotation</mode><labels>")
        for name in ("void", "precipitate", "bubble"):
            f.write(f"<label><name>{name}</name></label>")
        f.write("</labels></task></meta>\n")
        for i in range(n_images):
            f.write(f'<image id="{i}" name="img_{i:05d}.png" width="{size}" height="{size}">\n')
            for k in range(per):
                label = ("void", "precipitate", "bubble")[k % 3]
                z = int(rng.integers(-1, 3))
                cx, cy = rng.uniform(0, size, 2)
                r = rng.uniform(4, 24)
                if k % 2 == 0:
                    n = int(rng.integers(6, 16))
                    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
                    rad = r * rng.uniform(0.6, 1.0, n)
                    pts = ";".join(
                        f"{x:.2f},{y:.2f}"
                        for x, y in zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang), strict=True)
                    )
                    f.write(
                        f'<polygon label="{label}" source="manual" occluded="0" '
                        f'points="{pts}" z_order="{z}"></polygon>\n'
                    )
                else:
                    f.write(
                        f'<ellipse label="{label}" source="manual" occluded="0" '
                        f'cx="{cx:.2f}" cy="{cy:.2f}" rx="{r:.2f}" '
                        f'ry="{r * rng.uniform(0.3, 1):.2f}" '
                        f'rotation="{rng.uniform(0, 360):.2f}" z_order="{z}"></ellipse>\n'
                    )
            f.write("</image>\n")
        f.write("</annotations>\n")


# ------------------------------------------------------------------------------ the methods
def run_floor(xml: str, out: str) -> dict:
    from lxml import etree

    n = 0
    for _, el in etree.iterparse(xml, events=("end",), resolve_entities=False, no_network=True):
        if el.tag in ("polygon", "ellipse"):
            n += 1
        elif el.tag == "image":
            el.clear()
            while el.getprevious() is not None:
                del el.getparent()[0]
    return {"shapes": n}


def run_ours(xml: str, out: str, pipelined: bool = False) -> dict:
    from dlpipe.annotations import CvatReader, rasterise_frame
    from dlpipe.annotations.cvat._background import BackgroundReader

    reader = BackgroundReader(xml, name=xml) if pipelined else CvatReader(xml)
    n, t_raster, checksum = 0, 0.0, 0
    class_of = None
    for frame in reader.frames():
        if class_of is None:
            class_of = {name: i + 1 for i, name in enumerate(reader.meta.labels)}
        t0 = time.perf_counter()
        sem, _, _ = rasterise_frame(
            frame, class_of, frame.height, frame.width, counts=reader.counts
        )
        t_raster += time.perf_counter() - t0
        n += frame.n_shapes
        checksum += int(np.count_nonzero(sem))
    return {"shapes": n, "raster_seconds": t_raster, "foreground": checksum}


def run_pipelined(xml: str, out: str) -> dict:
    return run_ours(xml, out, pipelined=True)


def run_convert(xml: str, out: str) -> dict:
    from dlpipe.annotations import convert

    s = convert(xml, out, params={"read_images": False}, overwrite=True)
    return {"shapes": int(sum(s["objects_per_label"].values()) + s["counts"]["empty"])}


def run_naive(xml: str, out: str) -> dict:
    import xml.etree.ElementTree as ET

    from skimage.draw import ellipse, polygon

    root = ET.parse(xml).getroot()  # the whole file in memory
    labels = [lab.findtext("name") for lab in root.iter("label")]
    class_of = {name: i + 1 for i, name in enumerate(labels)}
    n, checksum = 0, 0
    for image in root.iter("image"):
        h, w = int(image.get("height")), int(image.get("width"))
        sem = np.zeros((h, w), np.uint8)
        inst = np.zeros((h, w), np.uint32)
        shapes = sorted(enumerate(image), key=lambda t: (int(t[1].get("z_order", 0)), t[0]))
        for k, el in shapes:
            if el.tag == "polygon":
                xy = np.array([p.split(",") for p in el.get("points").split(";")], float)
                rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, (h, w))
            elif el.tag == "ellipse":
                rr, cc = ellipse(
                    float(el.get("cy")) - 0.5,
                    float(el.get("cx")) - 0.5,
                    float(el.get("ry")),
                    float(el.get("rx")),
                    (h, w),
                    rotation=-np.deg2rad(float(el.get("rotation", 0))),
                )
            else:
                continue
            sem[rr, cc] = class_of[el.get("label")]
            inst[rr, cc] = k + 1
            n += 1
        checksum += int(np.count_nonzero(sem))
    return {"shapes": n, "foreground": checksum}


METHODS = {
    "floor": run_floor,
    "ours": run_ours,
    "pipelined": run_pipelined,
    "convert": run_convert,
    "naive": run_naive,
}


def measure(method: str, xml: Path, out: Path) -> dict:
    """Run one method in a child process; wall time and the child's own peak RSS."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", method, str(xml), str(out)],
        stdout=subprocess.PIPE,
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    result = json.loads(proc.stdout.read())
    if status != 0:
        raise RuntimeError(f"{method} failed")
    result.update(method=method, wall=wall, rss_mb=usage.ru_maxrss / 1024)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--shapes", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--skip", default="", help="comma-separated methods to leave out")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, xml, out = args.child
        t0 = time.perf_counter()
        result = METHODS[method](xml, out)
        result["seconds"] = time.perf_counter() - t0
        print(json.dumps(result))
        return
    tmp = Path(tempfile.mkdtemp(prefix="cvat_bench_"))
    try:
        xml = tmp / "annotations.xml"
        t0 = time.perf_counter()
        generate(xml, args.images, args.shapes, args.size)
        print(
            f"generated {args.images} images {args.size}x{args.size}, {args.shapes} shapes, "
            f"{xml.stat().st_size / 1e6:.1f} MB XML in {time.perf_counter() - t0:.1f} s"
        )
        res = {}
        for m in ("floor", "ours", "pipelined", "convert", "naive"):
            if m in args.skip.split(","):
                continue
            res[m] = r = measure(m, xml, tmp / "out.zarr")
            print(
                f"{m:8s} {r['seconds']:8.2f} s (process {r['wall']:6.2f} s) "
                f"{r['shapes'] / r['seconds']:10.0f} shapes/s  peak RSS {r['rss_mb']:7.1f} MB"
            )
        if "ours" in res and "floor" in res:
            f, o = res["floor"]["seconds"], res["ours"]
            budget = 2 * f + o["raster_seconds"]
            print(
                f"ours / (2 x floor + rasterisation {o['raster_seconds']:.2f} s) = "
                f"{o['seconds'] / budget:.2f} (target <= 1)"
            )
            print(f"ours / floor = {o['seconds'] / f:.2f}")
            if "pipelined" in res:
                t = res["pipelined"]["seconds"]
                print(
                    f"pipelined (parser in a child process, as `dlpipe cvat` runs) "
                    f"/ (2 x floor + rasterisation) = {t / budget:.2f} (target <= 1); "
                    f"ours / pipelined = {o['seconds'] / t:.2f}"
                )
        if "ours" in res and "naive" in res:
            print(
                f"naive / ours = {res['naive']['seconds'] / res['ours']['seconds']:.2f} "
                "(target >= 3)"
            )
            same = res["naive"]["foreground"] / max(res["ours"]["foreground"], 1)
            print(f"foreground pixels naive / ours = {same:.4f} (same shapes, same image)")
        if "convert" in res and "naive" in res:
            print(
                f"naive / convert (ours incl. Zarr writing) = "
                f"{res['naive']['seconds'] / res['convert']['seconds']:.2f}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
