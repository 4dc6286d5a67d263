"""The shared end of the dataset importers (COCO, instance folders): their images with
semantic and instance maps to a dataset Zarr through
:func:`dlpipe.stores.dataset.write_instance_dataset`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dlpipe.results import StageResult
from dlpipe.stores.dataset import Item, write_instance_dataset

__all__ = ["Layout", "import_result", "renumber", "write_import", "write_instance_dataset"]


class Layout(NamedTuple):
    """The arrays of a dataset Zarr, known before the first image is written."""

    classes: Sequence[str]  # with classes[0] == "background"
    sizes: Sequence[tuple[int, int]]  # (h, w) of each image
    channels: int  # 1 or 3
    dtype: Any  # of the images: uint8 or uint16


def renumber(inst: np.ndarray) -> tuple[np.ndarray, int]:
    """Instance ids made consecutive (1..K) in increasing order; K."""
    ids, inverse = np.unique(inst, return_inverse=True)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids])
        inverse = inverse + 1
    return inverse.reshape(inst.shape).astype(np.uint32), len(ids) - 1


def write_import(
    out: str | Path,
    frames: Iterable[Item],
    layout: Layout,
    stats: dict[str, int],
    *,
    source: str,
    kind: str,
    overwrite: bool,
) -> dict[str, Any]:
    """The end of an importer (COCO, instance folders): its frames written by
    :func:`write_instance_dataset`, grey images repeated to RGB in a colour dataset and
    cast to ``layout.dtype``; the summary with the importer's ``stats`` (counted while
    its frames were read).
    """

    def cast() -> Iterator[Item]:
        for name, img, sem, inst in frames:
            if layout.channels == 3 and img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            yield name, img.astype(layout.dtype, copy=False), sem, inst

    summary = write_instance_dataset(
        out,
        cast(),
        classes=layout.classes,
        sizes=layout.sizes,
        channels=layout.channels,
        source=source,
        kind=kind,
        overwrite=overwrite,
        dtype=layout.dtype,
    )
    return summary | stats


def import_result(summary: dict[str, Any], out: str | Path) -> StageResult:
    """An importer's summary with what tracking logs: its numbers and the whole summary."""
    return StageResult(
        summary,
        metrics={k: v for k, v in summary.items() if isinstance(v, int | float)},
        dicts={"import_summary.json": summary},
        summary=f"imported {summary['images']} images, {summary['objects']} objects: {out}",
    )
