"""Training data of the instance U-Net: patches of images and the targets of its three heads.

Two inputs are understood:

* a dataset Zarr with instances (``dlpipe cvat``, ``dlpipe import``): ``images`` (N, H, W[, C]),
  ``semantic``, ``instances`` (N, H, W), attribute ``classes``; the last ``val_fraction`` of
  the images validate; only ``train.input: 2d``;
* a tiled volume (``dlpipe tile``) with an instance label array ``labels/<name>/0``
  (integer ids, 0 background; ``name`` = ``train.instance_unet.instances``, null: the
  volume's one ``instances`` / ``*_instances`` label image, e.g. ``dlpipe tile --instances``'s
  ``pore_instances``): its ``split``
  z-ranges train and validate; 2D, 2.5D or 3D patches; every object is of one class
  (``train.instance_unet.class_name``).

Images become one grey channel (:func:`dlpipe.stores.channels.to_channels`) normalised by
the 0.1 / 99.9 percentiles of the training images (the volume's statistics). The targets
of a patch are computed from the instance labels of the patch grown by ``target_margin``
pixels on every side, so the distance map of an object the patch cuts is (nearly) the one of
the whole object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.stores.channels import to_channels
from dlpipe.stores.dataset import is_dataset, open_dataset, open_store
from dlpipe.stores.instance_labels import find_instance_labels
from dlpipe.stores.volume import open_volume
from dlpipe.training.instance_targets import instance_targets

__all__ = ["InstanceData", "Patch", "open_instance_data"]


@dataclass(frozen=True)
class Patch:
    """One patch: image (or z for a volume), start corner (z, y, x or y, x)."""

    image: int
    start: tuple[int, ...]


@dataclass
class InstanceData:
    """An instance-labelled input, inspected.

    Attributes
    ----------
    kind : ``"dataset"`` or ``"volume"``
    path : the store
    mode : ``2d``, ``2.5d`` or ``3d``
    classes : class names, ``classes[0] == "background"``
    train, val : image indices (dataset) or z-ranges ``[z0, z1)`` (volume)
    sizes : per image (h, w) without padding (dataset)
    shape : (z, y, x) of the volume
    p0_1, p99_9 : normalisation
    channels : channels of the stored images (1 or 3; the model sees 1)
    """

    kind: str
    path: Path
    mode: str
    classes: list[str]
    train: Any
    val: Any
    p0_1: float
    p99_9: float
    channels: int = 1
    sizes: list[tuple[int, int]] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    image_names: list[str] = field(default_factory=list)
    context: int = 1
    margin: int = 24
    _arrays: Any = None

    # ------------------------------------------------------------------ reading
    def arrays(self) -> tuple[Any, Any, Any]:
        """(images, instances, semantic or None), opened once."""
        if self._arrays is None:
            if self.kind == "dataset":
                g, _ = open_store(self.path)
                self._arrays = (g["images"], g["instances"], g["semantic"])
            else:
                vol = open_volume(self.path)
                self._arrays = (vol.image, vol.root[self._labels_key], None)
        return self._arrays

    _labels_key: str = ""

    def normalise(self, raw: np.ndarray, colour: bool) -> np.ndarray:
        grey = np.asarray(to_channels(raw, 1, channel_last=colour), np.float32)
        return np.clip((grey - self.p0_1) / (self.p99_9 - self.p0_1), 0.0, 1.0).astype(np.float32)

    def image_extent(self, i: int) -> tuple[int, ...]:
        """Spatial extent patches are drawn from: (h, w) of image i, or the volume's."""
        if self.kind == "dataset":
            return self.sizes[i]
        return self.shape[1:] if self.mode != "3d" else self.shape

    def region(
        self, i: int, start: Sequence[int], size: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Image (C, *size), semantic (int64; 255 outside the image), boundary, distance.

        ``i`` is the image (dataset) or z-slice (2d / 2.5d volume; ignored in 3d); ``start``
        the corner (may lie so that the patch passes the image: zero padded).
        """
        images, inst_arr, sem_arr = self.arrays()
        extent = self.image_extent(i)
        nd = len(size)
        m = self.margin
        lo = [max(s - m, 0) for s in start]
        hi = [min(s + n + m, e) for s, n, e in zip(start, size, extent, strict=True)]
        inner_lo = [max(s, 0) for s in start]
        inner_hi = [min(s + n, e) for s, n, e in zip(start, size, extent, strict=True)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        if self.kind == "dataset":
            inst = np.asarray(inst_arr[(i, *box)])
            sem = np.asarray(sem_arr[(i, *box)]).astype(np.int64)
        elif self.mode == "3d":
            inst = np.asarray(inst_arr[box])
            sem = (inst > 0).astype(np.int64)
        else:
            inst = np.asarray(inst_arr[(i, *box)])
            sem = (inst > 0).astype(np.int64)
        bnd, dist = instance_targets(inst)
        cut = tuple(slice(a - b, c - b) for a, b, c in zip(inner_lo, lo, inner_hi, strict=True))
        place = tuple(
            slice(a - s, c - s) for a, c, s in zip(inner_lo, inner_hi, start, strict=True)
        )
        sem_out = np.full(tuple(size), 255, np.int64)
        bnd_out = np.zeros(tuple(size), np.float32)
        dist_out = np.zeros(tuple(size), np.float32)
        sem_out[place] = sem[cut]
        bnd_out[place] = bnd[cut]
        dist_out[place] = dist[cut]
        img_out = np.zeros((self.context, *size), np.float32)
        inner = tuple(slice(a, c) for a, c in zip(inner_lo, inner_hi, strict=True))
        if self.kind == "dataset":
            raw = np.asarray(images[(i, *inner)])
            img_out[(0, *place)] = self.normalise(raw, raw.ndim == nd + 1)
        elif self.mode == "3d":
            img_out[(0, *place)] = self.normalise(np.asarray(images[inner]), False)
        else:
            half = self.context // 2
            for k, z in enumerate(range(i - half, i + half + 1)):
                zc = min(max(z, 0), self.shape[0] - 1)
                img_out[(k, *place)] = self.normalise(np.asarray(images[(zc, *inner)]), False)
        return img_out, sem_out, bnd_out, dist_out, np.asarray(0)

    def whole(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (C, *extent) normalised and true instances of validation item ``i``.

        Dataset: image ``i`` without padding; volume 2d/2.5d: z-slice ``i``; volume 3d: the
        validation slab (``i`` ignored).
        """
        images, inst_arr, _ = self.arrays()
        if self.kind == "dataset":
            h, w = self.sizes[i]
            raw = np.asarray(images[i, :h, :w])
            img = self.normalise(raw, raw.ndim == 3)[None]
            return img, np.asarray(inst_arr[i, :h, :w])
        if self.mode == "3d":
            z0, z1 = self.val
            img = self.normalise(np.asarray(images[z0:z1]), False)[None]
            return img, np.asarray(inst_arr[z0:z1])
        half = self.context // 2
        img = np.stack(
            [
                self.normalise(np.asarray(images[min(max(z, 0), self.shape[0] - 1)]), False)
                for z in range(i - half, i + half + 1)
            ]
        )
        return img, np.asarray(inst_arr[i])


def _percentiles(samples: list[np.ndarray], path: Path) -> tuple[float, float]:
    p0, p1 = np.percentile(np.concatenate([s.ravel() for s in samples]), [0.1, 99.9])
    if p1 <= p0:
        raise UserError(f"constant training images (p0_1 = p99_9 = {p0})", path=path)
    return float(p0), float(p1)


def open_instance_data(store: str | Path, params: Mapping[str, Any]) -> InstanceData:
    """Inspect the training input of an instance U-Net (see the module text).

    Raises
    ------
    UserError
        A dataset without ``instances``, a tiled volume without the instance label array,
        a dataset with input other than 2d, no object in the training images, or constant
        images.
    """
    path = Path(store)
    ip = params["instance_unet"]
    _, keys = open_store(path, missing="training data not found")
    mode = params["input"]
    context = int(params["context_slices"]) if mode == "2.5d" else 1
    if "images" in keys or is_dataset(keys):
        if "instances" not in keys:
            raise UserError(
                "not an instance dataset: no instances array (instance-unet trains on the "
                "instances of `dlpipe cvat` polygons/masks or `dlpipe import`)",
                path=path,
            )
        if mode != "2d":
            raise UserError(
                f"instance-unet on a dataset Zarr trains 2d, not train.input {mode!r}", path=path
            )
        ds = open_dataset(path, arrays=("images", "semantic", "instances"), what="a dataset")
        g = ds.group
        images, sem, inst = g["images"], g["semantic"], g["instances"]
        if not (tuple(images.shape[:3]) == tuple(sem.shape) == tuple(inst.shape)):
            raise UserError(
                f"images {images.shape}, semantic {sem.shape} and instances {inst.shape} "
                "must share (n, y, x)",
                path=path,
            )
        n = int(images.shape[0])
        if n == 0:
            raise UserError("the dataset has no images", path=path)
        names = list(params["classes"] or g.attrs.get("classes") or ["background", "object"])
        if len(names) < 2:
            raise UserError(f"need at least 2 classes (background and objects), got {names}")
        n_val = min(n - 1, round(n * float(params["val_fraction"])))
        h, w = int(sem.shape[1]), int(sem.shape[2])
        sizes = [tuple(int(v) for v in s) for s in g.attrs.get("image_sizes", [[h, w]] * n)]
        train = list(range(n - n_val))
        colour = images.ndim == 4  # a channel axis: grey(+alpha) or RGB(A)
        samples, objects = [], 0
        for i in train:
            hh, ww = sizes[i]
            objects += int(np.asarray(inst[i, :hh, :ww]).max(initial=0) > 0)
            if len(samples) < 16:
                raw = np.asarray(images[i, :hh, :ww])
                samples.append(np.asarray(to_channels(raw, 1, channel_last=colour), np.float32))
        if objects == 0:
            raise UserError("empty training set: no object in the training images", path=path)
        p0, p1 = _percentiles(samples, path)
        return InstanceData(
            "dataset",
            path,
            mode,
            names,
            train,
            list(range(n - n_val, n)),
            p0,
            p1,
            channels=int(images.shape[3]) if images.ndim == 4 else 1,
            sizes=sizes,
            image_names=list(g.attrs.get("image_names", [])),
            margin=int(ip["target_margin"]),
        )
    if "0" not in keys:
        raise UserError("not a dataset Zarr (images) nor a tiled volume (image level 0)", path=path)
    vol = open_volume(path)
    name = ip.get("instances") or find_instance_labels(
        path, "tiled volume", "--set instance_unet.instances"
    )
    key = f"labels/{name}/0"
    if key not in vol.root:
        raise UserError(
            f"tiled volume has no instance label array {key} (train.instance_unet.instances)",
            path=path,
        )
    arr = vol.root[key]
    if arr.dtype.kind not in "ui":
        raise UserError(f"{key} holds {arr.dtype}, not integer instance ids", path=path)
    shape = tuple(int(s) for s in vol.image.shape)
    if len(shape) != 3 or tuple(arr.shape) != shape:
        raise UserError(
            f"image {shape} and {key} {tuple(arr.shape)} must be one (z, y, x) shape", path=path
        )
    stats = vol.attrs.get("statistics") or {}
    split = vol.attrs.get("split") or {}
    nz = shape[0]
    train = tuple(int(v) for v in split.get("train", (0, nz)))
    val = tuple(int(v) for v in split.get("val", (0, 0)))
    if train[1] <= train[0]:
        raise UserError(f"empty training set: split train = {list(train)}", path=path)
    if "p0_1" in stats and "p99_9" in stats:
        p0, p1 = float(stats["p0_1"]), float(stats["p99_9"])
    else:
        zs = np.linspace(train[0], train[1] - 1, min(8, train[1] - train[0])).round().astype(int)
        p0, p1 = _percentiles([np.asarray(vol.image[int(z)], np.float32) for z in zs], path)
    if p1 <= p0:
        raise UserError(f"statistics p99_9 ({p1}) must exceed p0_1 ({p0})", path=path)
    data = InstanceData(
        "volume",
        path,
        mode,
        list(params["classes"] or ["background", ip["class_name"]]),
        train,
        val,
        p0,
        p1,
        shape=shape,
        context=context,
        margin=int(ip["target_margin"]),
    )
    data._labels_key = key
    zs = range(train[0], train[1], max(1, (train[1] - train[0]) // 16))
    if not any(np.asarray(arr[z]).any() for z in zs):
        raise UserError(
            f"empty training set: no object in {key} over the training z-range {list(train)}",
            path=path,
        )
    return data
