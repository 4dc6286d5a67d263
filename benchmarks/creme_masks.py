"""How were creme's binary masks made? Per-image Jaccard of clean.json's polygons against masks1.

The issue asks for Jaccard >= 0.99 between creme's COCO polygons (written as CVAT XML and
parsed by dlpipe) and the provided binary masks. This script measures, per image:

ours            dlpipe.annotations.convert of the polygons written as CVAT XML (COCO vertex
                on pixel index -> CVAT x + 0.5), pixel-centre convention
skimage         skimage.draw.polygon on the raw vertices (rows = y, cols = x)
skimage+outline the same plus skimage.draw.polygon_perimeter (boundary pixels included)
PIL             PIL.ImageDraw.polygon fill + outline (what cv2.fillPoly also does: every
                pixel the outline touches)

and the evidence on where the polygons came from: every vertex lies on a border pixel of
the mask, and every border pixel of an object's mask lies within 1.5 px of its polygon's
outline - the signature of cv2.approxPolyDP(contour, epsilon=1.5) applied to the masks'
contours. The masks are the source and the polygons a simplification of them.

Usage:  PYTHONPATH=src python benchmarks/creme_masks.py [../shared/data/creme/data/ds25s/fov200nm]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import zarr
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage.draw import polygon, polygon_perimeter

from dlpipe.annotations import convert, write_cvat_xml


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point p (m, 2) to the closed polyline with edges a[k] -> b[k]."""
    d = b - a
    l2 = np.maximum((d**2).sum(1), 1e-12)
    t = np.clip(((p[:, None, :] - a[None]) * d[None]).sum(2) / l2[None], 0, 1)
    q = a[None] + t[..., None] * d[None]
    return np.sqrt(((p[:, None, :] - q) ** 2).sum(2)).min(1)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    base = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else root / "../shared/data/creme/data/ds25s/fov200nm"
    )
    coco = json.loads((base / "clean.json").read_text())
    polys = {im["id"]: [] for im in coco["images"]}
    for ann in coco["annotations"]:
        polys[ann["image_id"]].append(np.asarray(ann["segmentation"][0], float).reshape(-1, 2))
    with tempfile.TemporaryDirectory() as tmp:
        images = [
            (
                im["file_name"],
                im["width"],
                im["height"],
                [
                    {"type": "polygon", "label": "hcloop", "points": (p + 0.5).tolist()}
                    for p in polys[im["id"]]
                ],
            )
            for im in coco["images"]
        ]
        xml = write_cvat_xml(Path(tmp) / "creme.xml", ["hcloop"], images)
        convert(xml, Path(tmp) / "c.zarr", params={"read_images": False})
        g = zarr.open_group(str(Path(tmp) / "c.zarr"), mode="r")
        ours = {n: g["semantic"][k] > 0 for k, n in enumerate(g.attrs["image_names"])}

    rows, dmax, on_border, n_vert, extra = [], [], 0, 0, []
    for im in coco["images"]:
        h, w, name = im["height"], im["width"], im["file_name"]
        mask = iio.imread(base / "masks1" / name) > 0
        sk = np.zeros((h, w), bool)
        skp = np.zeros((h, w), bool)
        pil = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(pil)
        lab, n = ndi.label(mask, structure=np.ones((3, 3)))
        border = mask & ~ndi.binary_erosion(mask, structure=np.ones((3, 3)))
        hit = set()
        for p in polys[im["id"]]:
            rr, cc = polygon(p[:, 1], p[:, 0], (h, w))
            sk[rr, cc] = True
            skp[rr, cc] = True
            rr, cc = polygon_perimeter(p[:, 1], p[:, 0], (h, w))
            skp[rr, cc] = True
            draw.polygon([tuple(v) for v in p], fill=1, outline=1)
            xi, yi = p[:, 0].astype(int), p[:, 1].astype(int)
            on_border += int(border[yi, xi].sum())
            n_vert += len(p)
            comp = lab[yi[0], xi[0]]
            hit.add(comp)
            bp = np.argwhere(border & (lab == comp))[:, ::-1].astype(float)
            dmax.append(seg_dist(bp, p, np.roll(p, -1, axis=0)).max())
        extra += [int((lab == c).sum()) for c in set(range(1, n + 1)) - hit]
        rows.append(
            (
                name,
                jaccard(ours[name], mask),
                jaccard(sk, mask),
                jaccard(skp, mask),
                jaccard(np.array(pil) > 0, mask),
            )
        )
    cols = ("ours", "skimage", "skimage+outline", "PIL/fillPoly")
    print(f"{'image':>8s} " + " ".join(f"{c:>16s}" for c in cols))
    for r in rows:
        print(f"{r[0]:>8s} " + " ".join(f"{v:16.4f}" for v in r[1:]))
    arr = np.array([r[1:] for r in rows])
    print(f"{'min':>8s} " + " ".join(f"{v:16.4f}" for v in arr.min(0)))
    print(f"{'mean':>8s} " + " ".join(f"{v:16.4f}" for v in arr.mean(0)))
    dmax = np.array(dmax)
    print(f"vertices on a mask border pixel: {on_border} / {n_vert}")
    print(
        f"per object, largest distance of a mask border pixel to the polygon outline: "
        f"min {dmax.min():.3f}, median {np.median(dmax):.3f}, max {dmax.max():.3f} px "
        f"({len(dmax)} objects; Douglas-Peucker with epsilon 1.5 bounds it by 1.5)"
    )
    print(f"mask components without a polygon: {len(extra)} (sizes {extra} px)")


if __name__ == "__main__":
    main()
