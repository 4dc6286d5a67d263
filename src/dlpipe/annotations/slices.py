"""Slices out of a tiled volume for annotation in CVAT, with predicted labels as masks.

``dlpipe slices VOL.zarr --out TASK_DIR`` writes 8-bit PNG images of chosen z-, y- and
x-slices, windowed by the volume's stored p0.1-p99.9 statistics, named
``<volume stem>_z0012.png`` (``_y0080``, ``_x0100``), and a manifest ``slices.json``.
With ``labels`` it also writes ``annotations.zip``: a CVAT for images 1.1 export of the
predicted labels of those slices (one mask shape per connected region), for CVAT's
"Upload annotations" on the task made from the images.

Only the slices are read: a z-slice reads one layer of chunks, a y- or x-slice one column
of chunks, so the cost grows with the number of slices, not with the volume.

Orientation: the image of z-slice ``i`` is ``vol[i, :, :]`` (rows y, columns x), of
y-slice ``j`` ``vol[:, j, :]`` (rows z, columns x), of x-slice ``k`` ``vol[:, :, k]``
(rows z, columns y).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dlpipe.annotations.cvat.write import encode_rle, write_cvat_xml
from dlpipe.annotations.suggest import MIN_GAP, suggest_slices
from dlpipe.errors import UserError
from dlpipe.results import StageResult
from dlpipe.stores.annotations import read_plane
from dlpipe.stores.atomic import atomic_path, json_safe
from dlpipe.stores.ngff import rgba
from dlpipe.stores.volume import dlpipe_attrs, open_labels, open_volume

__all__ = [
    "AXES",
    "MANIFEST",
    "SlicePlan",
    "export_slices",
    "iter_positions",
    "label_shapes",
    "parse_slice_name",
    "plan_slices",
    "read_manifest",
    "slice_name",
    "store_classes",
    "window_u8",
]

AXES = ("z", "y", "x")
MANIFEST = "slices.json"
ANNOTATIONS_ZIP = "annotations.zip"

#: (axis, index) of one slice.
SlicePlan = tuple[str, int]

_NAMED = re.compile(r"(?:^|_)([zyx])(\d+)$")
_DEMO = re.compile(r"^slice_(\d+)$")


def slice_name(stem: str, axis: str, index: int) -> str:
    """The image name of a slice: ``<stem>_z0012.png`` (index zero-padded to >= 4 digits)."""
    return f"{stem}_{axis}{index:04d}.png"


def parse_slice_name(name: str) -> SlicePlan | None:
    """The (axis, index) an image name gives, or None.

    ``scan_z0012.png`` -> ("z", 12), ``scan_y0080.png`` -> ("y", 80), and the demo's
    ``slice_0012.png`` -> ("z", 12); folders in the name are ignored.
    """
    stem = PurePosixPath(name.replace("\\", "/")).stem
    m = _DEMO.match(stem)
    if m:
        return "z", int(m.group(1))
    m = _NAMED.search(stem)
    if m:
        return m.group(1), int(m.group(2))
    return None


def _axes(axes: Sequence[str]) -> list[str]:
    out: list[str] = []
    for a in axes:
        for part in str(a).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part not in AXES:
                raise UserError(f"axis {part!r} is not one of z, y, x")
            if part not in out:
                out.append(part)
    return out or ["z"]


def plan_slices(
    shape: Sequence[int],
    axes: Sequence[str] = ("z",),
    *,
    at: Sequence[int] | None = None,
    count: int | None = None,
) -> list[SlicePlan]:
    """The slices to write: ``at`` (the same indices on every axis) or ``count`` per axis.

    ``count`` N places the slices at the centres of N equal parts of the axis
    (``(2k + 1) * n // (2 N)``): 3 of 48 are 8, 24, 40.
    """
    names = _axes(axes)
    if (at is None) == (count is None):
        raise UserError("give either --at i,j,... or --count N")
    out: list[SlicePlan] = []
    for axis in names:
        n = int(shape[AXES.index(axis)])
        if at is not None:
            idx = sorted({int(i) for i in at})
            bad = [i for i in idx if not 0 <= i < n]
            if bad:
                raise UserError(f"--at {bad[0]} is outside the {axis} axis (0..{n - 1})")
        else:
            assert count is not None
            if not 1 <= count <= n:
                raise UserError(f"--count {count}: the {axis} axis has {n} slices")
            idx = [(2 * k + 1) * n // (2 * count) for k in range(count)]
        out.extend((axis, i) for i in idx)
    return out


def window_u8(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``data`` as uint8: ``lo`` -> 0, ``hi`` -> 255, linear between, clipped, rounded."""
    span = float(hi) - float(lo)
    if not span > 0:
        return np.where(np.asarray(data, np.float64) > lo, 255, 0).astype(np.uint8)
    scaled = (np.asarray(data, np.float64) - float(lo)) * (255.0 / span)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _properties(path: Path, labels_name: str) -> list[str]:
    """Class names from the NGFF ``properties`` of ``labels/<labels_name>`` ([] if none)."""
    for meta in ("zarr.json", ".zattrs"):
        f = path / "labels" / labels_name / meta
        if f.is_file():
            data = json.loads(f.read_text())
            attrs = data.get("attributes", data) if meta == "zarr.json" else data
            props = attrs.get("ome", attrs).get("image-label", {}).get("properties") or []
            by_value = {int(p["label-value"]): str(p["name"]) for p in props if "name" in p}
            if by_value and min(by_value) >= 0:
                return [by_value.get(v, f"class_{v}") for v in range(max(by_value) + 1)]
    return []


def store_classes(path: str | Path, labels_name: str = "phases") -> list[str]:
    """Class names by label value of a store: ``dlpipe.classes``, else label properties."""
    path = Path(path)
    classes = dlpipe_attrs(path).get("classes")
    if classes:
        return [str(c) for c in classes]
    return _properties(path, labels_name) if path.is_dir() else []


def label_shapes(labels: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """CVAT mask shapes of a 2D label image: one per 8-connected region of each value >= 1.

    Value 0 is the background and gets no shape; value ``v`` is labelled ``classes[v]``.
    """
    from skimage import measure  # heavy: only when labels are exported

    shapes: list[dict[str, Any]] = []
    for value in np.unique(labels):
        if value == 0:
            continue
        if value >= len(classes):
            raise UserError(f"label value {int(value)} has no class name ({', '.join(classes)})")
        regions = measure.label(labels == value, connectivity=2)
        for region in measure.regionprops(regions):
            top, left, _, _ = region.bbox
            rle, x0, y0, width, height = encode_rle(region.image)
            shapes.append(
                {
                    "type": "mask",
                    "label": classes[int(value)],
                    "source": "auto",
                    "occluded": "0",
                    "rle": rle,
                    "left": left + x0,
                    "top": top + y0,
                    "width": width,
                    "height": height,
                    "z_order": "0",
                }
            )
    return shapes


def _statistics_window(attrs: Mapping[str, Any], path: Path) -> tuple[float, float]:
    stats = attrs.get("statistics") or {}
    if "p0_1" not in stats or "p99_9" not in stats:
        raise UserError("no p0.1/p99.9 statistics: re-run `dlpipe tile`", path=path)
    return float(stats["p0_1"]), float(stats["p99_9"])


def export_slices(
    volume: str | Path,
    out: str | Path,
    *,
    axes: Sequence[str] = ("z",),
    at: Sequence[int] | None = None,
    count: int | None = None,
    labels: str | Path | None = None,
    labels_name: str = "phases",
    classes: Sequence[str] | None = None,
    overwrite: bool = False,
    suggest: str | Path | None = None,
    min_gap: int = MIN_GAP,
) -> StageResult:
    """Write slices of a tiled volume as 8-bit PNGs for a CVAT task, and a manifest.

    Parameters
    ----------
    volume : ``VOL.zarr`` of ``dlpipe tile`` (its ``dlpipe.statistics`` give the window)
    out : the task folder to write (whole, atomically; an existing empty folder is fine)
    axes : ``z``, ``y``, ``x`` (several allowed)
    at, count : the slice indices (on every axis), or N evenly spaced per axis
    labels : a label volume of the same shape (``PRED.zarr``) whose slices become
        ``out/annotations.zip``, a CVAT for images 1.1 export of mask shapes
    labels_name : the label image in ``labels`` (``labels/<name>/0``)
    classes : class names by label value; default those of ``labels`` (``dlpipe.classes``
        or label properties), else of ``volume``, else ``class_<v>``
    overwrite : replace ``out`` if it exists
    suggest : ``PRED.zarr`` of ``dlpipe predict``: write its ``count`` most uncertain
        slices of ``axes`` not annotated yet, ``min_gap`` apart
        (:mod:`dlpipe.annotations.suggest`); their uncertainty goes to the manifest

    Returns
    -------
    StageResult
        ``images`` (names), ``slices`` ({axis: [index, ...]}), ``window``, ``out``,
        ``manifest`` and ``annotations`` (the zip, or None), with one line for the user.
    """
    import imageio.v3 as iio  # image plugins load on first use

    vol = open_volume(volume)
    lo, hi = _statistics_window(vol.attrs, vol.path)
    shape = tuple(int(s) for s in vol.image.shape)
    if len(shape) != 3:
        raise UserError(f"expected a (z, y, x) volume, got shape {shape}", path=vol.path)
    uncertainty: dict[SlicePlan, float] = {}
    if suggest is not None:
        if at is not None or count is None:
            raise UserError("--suggest takes --count N (not --at)")
        picked = suggest_slices(vol.path, suggest, count, _axes(axes), shape, min_gap=min_gap)
        uncertainty = {(a, i): u for a, i, u in picked}
        plan = list(uncertainty)
    else:
        plan = plan_slices(shape, axes, at=at, count=count)
    lab = None
    names: list[str] = []
    if labels is not None:
        lab = open_labels(labels, labels_name=labels_name)
        if tuple(lab.shape) != shape:
            raise UserError(f"labels are {tuple(lab.shape)}, the volume {shape}", path=labels)
        names = list(classes or store_classes(labels, labels_name))
        names = names or store_classes(vol.path, labels_name)
    out = Path(out)
    if out.is_dir() and not any(out.iterdir()):
        overwrite = True  # an empty folder made for the task
    stem = vol.path.name.removesuffix(".zarr") or vol.path.stem
    entries: dict[str, dict[str, Any]] = {}
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        frames: list[tuple[str, int, int, list[dict[str, Any]]]] = []
        for axis, index in tqdm(plan, desc="slices", unit="slice", disable=None):
            name = slice_name(stem, axis, index)
            image = window_u8(read_plane(vol.image, axis, index), lo, hi)
            iio.imwrite(tmp / name, image, extension=".png")
            entries[name] = {
                "axis": axis,
                "index": index,
                "volume": str(vol.path.resolve()),
                "window": [lo, hi],
                "shape": list(image.shape),
            }
            if (axis, index) in uncertainty:
                entries[name]["uncertainty"] = uncertainty[(axis, index)]
            if lab is not None:
                sl = read_plane(lab, axis, index)
                if not names:
                    top = int(sl.max()) if sl.size else 0
                    names = [f"class_{v}" for v in range(max(top + 1, 2))]
                frames.append((name, image.shape[1], image.shape[0], label_shapes(sl, names)))
        manifest = {
            "volume": str(vol.path.resolve()),
            "shape": list(shape),
            "window": [lo, hi],
            "statistics": "p0_1..p99_9",
            "slices": entries,
        }
        if suggest is not None:
            manifest["suggested_from"] = str(Path(suggest).resolve())
        if lab is not None:
            manifest["labels"] = str(Path(labels).resolve())  # type: ignore[arg-type]
            manifest["classes"] = names
            _write_export(tmp / ANNOTATIONS_ZIP, out.name, names[1:], frames)
        (tmp / MANIFEST).write_text(json.dumps(json_safe(manifest), indent=2) + "\n")
    by_axis: dict[str, list[int]] = {}
    for axis, index in plan:
        by_axis.setdefault(axis, []).append(index)
    zipped = out / ANNOTATIONS_ZIP if lab is not None else None
    per_axis = ", ".join(f"{a} {len(v)}" for a, v in by_axis.items())
    extra = f" and {zipped.name}" if zipped else ""
    if uncertainty:
        extra += f", most uncertain first (1 - margin {max(uncertainty.values()):.3f} ..)"
    return StageResult(
        {
            "images": list(entries),
            "slices": by_axis,
            "window": [lo, hi],
            "out": out,
            "manifest": out / MANIFEST,
            "annotations": zipped,
        },
        metrics={"slices": float(len(entries))},
        artifacts=[out / MANIFEST],
        summary=f"wrote {len(entries)} slices ({per_axis}){extra}: {out}",
    )


def _write_export(
    path: Path,
    task_name: str,
    labels: Sequence[str],
    frames: list[tuple[str, int, int, list[dict[str, Any]]]],
) -> None:
    """``annotations.xml`` of the frames, zipped as CVAT's "Upload annotations" takes it."""
    xml = path.with_suffix(".xml")
    n = len(frames)
    task = {
        "name": task_name,
        "size": str(n),
        "mode": "annotation",
        "start_frame": "0",
        "stop_frame": str(max(0, n - 1)),
        "labels": None,
    }
    specs = [
        {"name": lab, "color": "#{:02x}{:02x}{:02x}".format(*rgba(v)[:3]), "type": "any"}
        for v, lab in enumerate(labels, start=1)
    ]
    write_cvat_xml(xml, specs, iter(frames), task=task)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(xml, "annotations.xml")
    xml.unlink()


def read_manifest(path: str | Path) -> dict[str, SlicePlan]:
    """Image name -> (axis, index) from a ``slices.json`` manifest."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        entries = data.get("slices", data)
        return {
            str(name): (str(e["axis"]), int(e["index"]))
            for name, e in entries.items()
            if isinstance(e, Mapping)
        }
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise UserError(f"not a slices manifest ({exc.__class__.__name__})", path=path) from None


def iter_positions(names: Sequence[str], manifest: Mapping[str, SlicePlan]) -> Iterator[SlicePlan]:
    """(axis, index) per name: the manifest's entry (by name or base name), else the name's."""
    for name in names:
        base = PurePosixPath(name.replace("\\", "/")).name
        pos = manifest.get(name) or manifest.get(base) or parse_slice_name(name)
        if pos is None:
            raise UserError(
                f"image {name!r}: its name gives no slice position (<stem>_z0012.png) and it "
                "is not in the manifest (slices.json)"
            )
        yield pos
