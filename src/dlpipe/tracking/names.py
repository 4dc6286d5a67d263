"""What a stage run is called and tagged: one vocabulary for every stage.

Every stage run carries the tags ``stage``, ``dataset``, ``model`` and ``kind`` and is named
``<stage> <dataset>/<model>`` (``train demo/f16-d4-ce+dice-2d-s4``, ``evaluate demo/rf``).

* ``dataset``: the dataset's name (``demo``), never a path. The workflow passes it with
  ``dlpipe --dataset NAME``; a single command derives it from its input path with
  :func:`dataset_name` (``results/demo/volume.zarr`` -> ``demo``, ``scan.zarr`` -> ``scan``).
* ``model``: the sweep's model name (``--model-name``; else the model folder's name) or the
  baseline's method (``otsu``, ``rf``).
* ``kind``: ``unet``, ``maskrcnn``, ``baseline``, ``data`` (synth, tile, slices, cvat,
  import) or ``summary``.

This module imports nothing heavy: the CLI calls it before any stage starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.stores.card import FAMILIES, read_card, train_run_id

__all__ = [
    "GENERIC",
    "KINDS",
    "dataset_name",
    "family_params",
    "lineage",
    "run_name",
]

GENERIC = frozenset(
    {
        "volume",
        "labels",
        "cvat",
        "annotations",
        "images",
        "prediction",
        "clean",
        "data",
        "dataset",
        "metrics",
        "clean_metrics",
    }
)
"""File stems that name a role, not a dataset: the dataset is the folder above them."""

KINDS = ("unet", "maskrcnn", "baseline", "data", "summary")
"""The values of the ``kind`` tag."""

_SUFFIXES = (".ome.zarr", ".ome.tif", ".ome.tiff", ".zarr", ".tif", ".tiff", ".h5", ".npy")


def _stem(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def dataset_name(path: str | Path | None) -> str:
    """The dataset a path belongs to: its stem, or the first folder above a generic name.

    >>> dataset_name("results/demo/volume.zarr")
    'demo'
    >>> dataset_name("results/demo/cvat/annotations.xml")
    'demo'
    >>> dataset_name("/data/scan_07.zarr")
    'scan_07'
    >>> dataset_name("scan.h5:/entry/data")
    'scan'
    >>> dataset_name("synthetic-gfrp")
    'synthetic-gfrp'
    """
    if path is None or str(path) == "":
        return ""
    text = str(path)
    if ".h5:" in text or ".hdf5:" in text:  # FILE.h5:/dataset
        text = text.split(":", 1)[0]
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = Path.cwd() / p
    for part in [p, *p.parents]:
        stem = _stem(part.name)
        if stem and stem.lower() not in GENERIC:
            return stem
    return _stem(Path(text).name)


def lineage(path: str | Path) -> dict[str, str]:
    """Where a segmentation came from, from its ``dlpipe`` attributes.

    Returns
    -------
    dict
        ``model_dir`` (the model folder of a prediction, and of a clean-up of one),
        ``volume`` (the volume it was predicted from, or the scan a baseline's volume was
        tiled from), ``model`` (the model folder's name or
        the baseline's method), ``kind`` (the card's family or ``baseline``),
        ``train_run_id`` (the MLflow run that trained the model, from its card); a key is
        absent when the attributes do not say.
    """
    # zarr is slow to import: `dlpipe --help` does not pay for it
    from dlpipe.stores.volume import dlpipe_attrs

    attrs = dlpipe_attrs(path)
    out: dict[str, str] = {}
    pred = attrs.get("prediction")
    if isinstance(pred, Mapping):
        if pred.get("model_dir"):
            out["model_dir"] = str(pred["model_dir"])
        volume = pred.get("volume")
        if isinstance(volume, Mapping) and volume.get("path"):
            out["volume"] = str(volume["path"])
    model = attrs.get("model")  # a Mask R-CNN prediction: {"dir", "hash"}
    if isinstance(model, Mapping) and model.get("dir"):
        out["model_dir"] = str(model["dir"])
    source = attrs.get("source")  # the scan a tiled volume (and a baseline of it) came from
    if "volume" not in out and isinstance(source, Mapping) and source.get("path"):
        out["volume"] = str(source["path"])
    elif "volume" not in out and isinstance(source, str) and source:
        out["volume"] = source
    if "model_dir" in out:
        out["model"] = Path(out["model_dir"]).name
        family = _family(out["model_dir"])
        if family:
            out["kind"] = family
        run_id = train_run_id(out["model_dir"])
        if run_id:
            out["train_run_id"] = run_id
    base = attrs.get("baseline")
    if isinstance(base, Mapping) and base.get("method"):
        out["model"] = out["method"] = str(base["method"])
        out["kind"] = "baseline"
    return out


def _family(model_dir: str | Path) -> str:
    """The family a model folder's card names ("" when unreadable)."""
    try:
        family = read_card(model_dir).get("model")
    except UserError:
        return ""
    return str(family) if family in FAMILIES else ""


def run_name(stage: str, dataset: str = "", model: str = "") -> str:
    """``<stage> <dataset>/<model>``; parts that are unknown are left out.

    >>> run_name("train", "demo", "f16-d4")
    'train demo/f16-d4'
    >>> run_name("tile", "demo")
    'tile demo'
    >>> run_name("summary")
    'summary'
    """
    where = "/".join(p for p in (dataset, model) if p)
    return f"{stage} {where}" if where else stage


def family_params(params: Mapping[str, Any], family: str) -> dict[str, Any]:
    """``params`` without the sections of the other model families.

    A U-Net run logs no ``maskrcnn.*`` parameter.

    >>> family_params({"lr": 1, "maskrcnn": {"backbone": "r50"}}, "unet")
    {'lr': 1}
    """
    other = {f for f in FAMILIES if f != family}
    return {k: v for k, v in params.items() if k not in other}
