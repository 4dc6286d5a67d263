"""Mask R-CNN training data: crops of an instance dataset Zarr and their targets.

The dataset is the layout written by ``dlpipe cvat`` and ``dlpipe import``: arrays
``images`` (N, H, W[, C]), ``semantic`` (N, H, W uint8, 0 background) and ``instances``
(N, H, W uint32, 0 background, 1..K per image), attributes ``classes`` (``classes[0] ==
"background"``), ``image_names`` and, for datasets of padded images, ``image_sizes``
([[h, w], ...], the original sizes; the padding is never cropped).

A training sample is a ``tile_size`` square crop (padded with zeros where the image is
smaller), augmented by a random dihedral element (flips and 90° rotations) and intensity
jitter. Targets are computed *after* the transform from the transformed instance map
(:func:`dlpipe.annotations.targets_from_arrays`), so boxes are always the tight boxes of
the masks; an object that the crop cuts to fewer than ``min_object_area`` pixels is removed
from the targets (objects that are whole in the crop are always kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from dlpipe.annotations.targets import targets_from_arrays
from dlpipe.errors import UserError
from dlpipe.models.maskrcnn import rescale, scaled_size
from dlpipe.stores.dataset import ARRAYS, open_dataset
from dlpipe.training.augment import Augment


@dataclass
class InstanceSource:
    """An instance dataset Zarr, inspected.

    Attributes
    ----------
    path : the Zarr group
    n : number of images
    train, val : image indices used for training / validation (the last ``val_fraction``)
    sizes : (h, w) of each image without padding
    classes : class names, ``classes[0] == "background"``
    channels : 1 (grey) or 3 (RGB)
    p0_1, p99_9 : normalisation percentiles of the training images
    objects : per image, (K, 3) int64 rows (instance id, centre y, centre x)
    areas : per image, pixel count per instance id (index = id)
    scale : the factor the images were rescaled by (pixel size / the model's pixel size)
    arrays : the rescaled ``images``, ``semantic``, ``instances`` in memory (scale != 1)
    """

    path: Path
    n: int
    train: list[int]
    val: list[int]
    sizes: list[tuple[int, int]]
    classes: list[str]
    channels: int
    p0_1: float
    p99_9: float
    image_names: list[str] = field(default_factory=list)
    objects: list[np.ndarray] = field(default_factory=list)
    areas: list[np.ndarray] = field(default_factory=list)
    scale: float = 1.0
    arrays: dict[str, np.ndarray] | None = None

    def open(self) -> Any:
        """The Zarr group, read-only (the rescaled arrays when the images were rescaled)."""
        if self.arrays is not None:
            return self.arrays
        return zarr.open_group(str(self.path), mode="r")


def _rescaled(
    images: Any, sem: Any, inst: Any, sizes: list[tuple[int, int]], scale: float
) -> tuple[dict[str, np.ndarray], list[tuple[int, int]]]:
    """Every image rescaled by ``scale`` in memory (zero-padded to the largest)."""
    new = [scaled_size(h, w, scale) for h, w in sizes]
    hh, ww = max(h for h, _ in new), max(w for _, w in new)
    n = len(sizes)
    out = {
        "images": np.zeros((n, hh, ww, *images.shape[3:]), np.float32),
        "semantic": np.zeros((n, hh, ww), np.uint8),
        "instances": np.zeros((n, hh, ww), np.uint32),
    }
    for i, ((h, w), (nh, nw)) in enumerate(zip(sizes, new, strict=True)):
        out["images"][i, :nh, :nw] = rescale(np.asarray(images[i, :h, :w]), (nh, nw), False)
        out["semantic"][i, :nh, :nw] = rescale(np.asarray(sem[i, :h, :w]), (nh, nw), True)
        out["instances"][i, :nh, :nw] = rescale(np.asarray(inst[i, :h, :w]), (nh, nw), True)
    return out, new


def open_instances(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    scale: float = 1.0,
) -> InstanceSource:
    """Inspect an instance dataset Zarr (from ``dlpipe cvat`` or ``dlpipe import``).

    With ``scale`` != 1 (the images' pixel size over the model's) every image is rescaled
    in memory first (linear for the image, nearest for the labels), so that objects have
    the size in pixels the model works at.

    Raises
    ------
    UserError
        Missing or incomplete store, no ``instances`` array, shapes that differ, fewer than
        two classes, or no image at all.
    """
    path = Path(path)
    data = open_dataset(
        path,
        arrays=ARRAYS,
        what="an instance dataset",
        hint=" (Mask R-CNN trains on the output of `dlpipe cvat` or `dlpipe import`)",
        missing="training data not found",
    )
    group = data.group
    images, sem, inst = group["images"], group["semantic"], group["instances"]
    if not (tuple(images.shape[:3]) == tuple(sem.shape) == tuple(inst.shape)):
        raise UserError(
            f"images {images.shape}, semantic {sem.shape} and instances {inst.shape} must "
            "share (n, y, x)",
            path=path,
        )
    if images.ndim == 4 and images.shape[3] not in (1, 3):
        raise UserError(f"images need 1 or 3 channels, got {images.shape[3]}", path=path)
    n = int(images.shape[0])
    if n == 0:
        raise UserError("the dataset has no images", path=path)
    names = list(classes) if classes else list(group.attrs.get("classes", []))
    if len(names) < 2:
        raise UserError(
            f"need at least 2 classes (background and one object class), got {names}", path=path
        )
    n_val = min(n - 1, round(n * val_fraction))
    h, w = int(sem.shape[1]), int(sem.shape[2])
    sizes = [tuple(int(v) for v in s) for s in group.attrs.get("image_sizes", [[h, w]] * n)]
    arrays = None
    if scale != 1.0:
        arrays, sizes = _rescaled(images, sem, inst, sizes, float(scale))
        images, sem, inst = arrays["images"], arrays["semantic"], arrays["instances"]
    src = InstanceSource(
        path=path,
        n=n,
        train=list(range(n - n_val)),
        val=list(range(n - n_val, n)),
        sizes=sizes,
        classes=names,
        channels=3 if images.ndim == 4 and images.shape[3] == 3 else 1,
        p0_1=0.0,
        p99_9=1.0,
        image_names=list(group.attrs.get("image_names", [])),
        scale=float(scale),
        arrays=arrays,
    )
    samples = []
    for i in range(n):
        hh, ww = sizes[i]
        lab = np.asarray(inst[i, :hh, :ww])
        s = np.asarray(sem[i, :hh, :ww])
        top = int(lab.max(initial=0))
        cls = int(s.max(initial=0))
        if cls >= len(names):
            raise UserError(
                f"image {i} has class {cls}, outside the {len(names)} classes {names}", path=path
            )
        areas = np.bincount(lab.ravel(), minlength=top + 1)
        ids = np.flatnonzero(areas[1:]) + 1
        centres = []
        if len(ids):
            ys, xs = np.nonzero(lab)
            v = lab[ys, xs]
            cy = np.bincount(v, weights=ys, minlength=top + 1) / np.maximum(areas, 1)
            cx = np.bincount(v, weights=xs, minlength=top + 1) / np.maximum(areas, 1)
            centres = np.stack([ids, np.round(cy[ids]), np.round(cx[ids])], axis=1)
        src.objects.append(np.asarray(centres, np.int64).reshape(-1, 3))
        src.areas.append(areas)
        if i in src.train and len(samples) < 16:
            samples.append(np.asarray(images[i, :hh, :ww], np.float32).ravel())
    if not any(len(src.objects[i]) for i in src.train):
        raise UserError("empty training set: no object in the training images", path=path)
    p0, p1 = np.percentile(np.concatenate(samples), [0.1, 99.9])
    if p1 <= p0:
        raise UserError(f"constant training images (p0_1 = p99_9 = {p0})", path=path)
    src.p0_1, src.p99_9 = float(p0), float(p1)
    return src


@dataclass(frozen=True)
class CropSpec:
    """One crop: image index, top-left corner (may be 0 with padding), augmentation seed."""

    image: int
    y0: int
    x0: int
    seed: int


def random_crops(
    src: InstanceSource,
    count: int,
    tile: int,
    rng: np.random.Generator,
    object_crops: float = 0.5,
) -> list[CropSpec]:
    """``count`` random crops of the training images.

    With probability ``object_crops`` a crop is centred (± tile/4) on a random object of a
    random image, else its corner is uniform. Images with objects are drawn for object crops.
    """
    with_objects = [i for i in src.train if len(src.objects[i])]
    specs = []
    for _ in range(count):
        if with_objects and rng.random() < object_crops:
            i = with_objects[int(rng.integers(len(with_objects)))]
            objs = src.objects[i]
            _, cy, cx = objs[int(rng.integers(len(objs)))]
            jy, jx = rng.integers(-(tile // 4), tile // 4 + 1, size=2)
            h, w = src.sizes[i]
            y0 = int(np.clip(cy + jy - tile // 2, 0, max(h - tile, 0)))
            x0 = int(np.clip(cx + jx - tile // 2, 0, max(w - tile, 0)))
        else:
            i = src.train[int(rng.integers(len(src.train)))]
            h, w = src.sizes[i]
            y0 = int(rng.integers(max(h - tile, 0) + 1))
            x0 = int(rng.integers(max(w - tile, 0) + 1))
        specs.append(CropSpec(i, y0, x0, int(rng.integers(2**31))))
    return specs


def grid_crops(src: InstanceSource, indices: Sequence[int], tile: int) -> list[CropSpec]:
    """Crops covering each image of ``indices`` (stride ``tile``, the last flush with the edge)."""

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        s = list(range(0, n - tile, tile))
        return [*s, n - tile]

    specs = []
    for i in indices:
        h, w = src.sizes[i]
        specs += [CropSpec(i, y, x, 0) for y in starts(h) for x in starts(w)]
    return specs


def drop_cut_objects(instances: np.ndarray, full_areas: np.ndarray, min_area: int) -> np.ndarray:
    """Remove the objects that a crop cut to fewer than ``min_area`` pixels.

    Parameters
    ----------
    instances : (y, x) uint32 instance map of a crop
    full_areas : pixel count per instance id in the whole image (index = id)
    min_area : smallest visible area kept for a cut object

    Returns
    -------
    (y, x) uint32, with the removed objects set to 0 (objects seen whole are kept).
    """
    top = int(instances.max(initial=0))
    if top == 0:
        return instances
    seen = np.bincount(instances.ravel(), minlength=top + 1)
    full = np.zeros(top + 1, np.int64)
    k = min(len(full_areas), top + 1)
    full[:k] = full_areas[:k]
    drop = (seen > 0) & (seen < min_area) & (seen < full)
    drop[0] = False
    if not drop.any():
        return instances
    out = instances.copy()
    out[drop[instances]] = 0
    return out


class CropDataset(torch.utils.data.Dataset):
    """Crops as (image tensor (3, T, T) float32 in [0, 1], torchvision target dict).

    Parameters
    ----------
    src : the dataset
    specs : the crops
    tile : crop size T
    augment : :class:`Augment` settings, or None (validation: no transform)
    min_object_area : see :func:`drop_cut_objects`
    """

    def __init__(
        self,
        src: InstanceSource,
        specs: Sequence[CropSpec],
        tile: int,
        augment: Augment | None,
        min_object_area: int,
    ) -> None:
        self.src, self.specs, self.tile = src, list(specs), tile
        self.augment, self.min_area = augment, min_object_area
        self._group: Any = None

    def __len__(self) -> int:
        return len(self.specs)

    def read(self, spec: CropSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised image (C, T, T) float32, semantic and instance maps (T, T) of a crop."""
        if self._group is None:
            self._group = self.src.open()
        g, t = self._group, self.tile
        h, w = self.src.sizes[spec.image]
        y1, x1 = min(spec.y0 + t, h), min(spec.x0 + t, w)
        box = (spec.image, slice(spec.y0, y1), slice(spec.x0, x1))
        c = self.src.channels
        img = np.zeros((c, t, t), np.float32)
        raw = np.asarray(g["images"][box], np.float32)
        raw = raw.reshape(*raw.shape[:2], -1)[..., :c]
        scale = self.src.p99_9 - self.src.p0_1
        img[:, : y1 - spec.y0, : x1 - spec.x0] = np.moveaxis(
            np.clip((raw - self.src.p0_1) / scale, 0.0, 1.0), -1, 0
        )
        sem = np.zeros((t, t), np.uint8)
        inst = np.zeros((t, t), np.uint32)
        sem[: y1 - spec.y0, : x1 - spec.x0] = g["semantic"][box]
        inst[: y1 - spec.y0, : x1 - spec.x0] = g["instances"][box]
        return img, sem, inst

    def sample(self, spec: CropSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The augmented crop: image (C, T, T), semantic and instance maps (T, T)."""
        img, sem, inst = self.read(spec)
        # class of each instance id, from the untransformed crop
        lut = np.zeros(int(inst.max(initial=0)) + 1, np.uint8)
        lut[inst.ravel()] = sem.ravel()
        lut[0] = 0
        if self.augment is not None:
            img, inst = self.augment(img, inst, np.random.default_rng(spec.seed))
            img = np.clip(img, 0.0, 1.0)
        inst = drop_cut_objects(inst, self.src.areas[spec.image], self.min_area)
        return img, lut[inst], inst

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img, sem, inst = self.sample(self.specs[i])
        if img.shape[0] == 1:
            img = np.repeat(img, 3, axis=0)
        return torch.from_numpy(np.ascontiguousarray(img)), targets_from_arrays(sem, inst)


def collate(batch: list[Any]) -> tuple[list[Any], list[Any]]:
    """A batch as (list of images, list of targets): Mask R-CNN takes lists."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
