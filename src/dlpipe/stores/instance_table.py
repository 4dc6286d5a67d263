"""The instance table of a prediction: ``PRED.zarr/instances.csv`` and ``instances.parquet``.

One row per predicted instance, written by every instance model (Mask R-CNN, instance-unet)
and read by ``dlpipe evaluate --instances`` for each instance's class and score. An image
(or z-slice) row has :data:`COLUMNS`; a volume's 3D instances add ``z2`` after ``z``
(:data:`VOLUME_COLUMNS`: ``z`` is then the first slice and ``z2`` one past the last).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "PARQUET",
    "TABLE",
    "VOLUME_COLUMNS",
    "read_instance_scores",
    "write_instance_table",
]

TABLE = "instances.csv"
PARQUET = "instances.parquet"
COLUMNS = [
    "image",
    "image_name",
    "z",
    "instance_id",
    "class_id",
    "class_name",
    "score",
    "x1",
    "y1",
    "x2",
    "y2",
    "area",
]
VOLUME_COLUMNS = [*COLUMNS[:3], "z2", *COLUMNS[3:]]
_TEXT = frozenset({"image_name", "class_name"})
_FLOAT = frozenset({"score"})  # every other column holds integers


def write_instance_table(
    folder: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS
) -> None:
    """Write ``rows`` as ``folder/instances.csv`` and ``folder/instances.parquet``.

    ``folder`` is the prediction store being written (staged: it appears by one rename).
    """
    folder = Path(folder)
    with open(folder / TABLE, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    import pyarrow as pa  # heavy: imported when a table is written
    import pyarrow.parquet as pq

    def kind(c: str) -> Any:
        return pa.string() if c in _TEXT else pa.float64() if c in _FLOAT else pa.int64()

    table = pa.table({c: pa.array([r[c] for r in rows], type=kind(c)) for c in columns})
    pq.write_table(table, folder / PARQUET)


def read_instance_scores(folder: str | Path) -> dict[int, dict[int, tuple[int, float]]] | None:
    """``{image: {instance_id: (class_id, score)}}`` of ``folder/instances.csv``; None when
    the prediction has no table."""
    path = Path(folder) / TABLE
    if not path.is_file():
        return None
    out: dict[int, dict[int, tuple[int, float]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(int(row["image"]), {})[int(row["instance_id"])] = (
                int(row["class_id"]),
                float(row["score"]),
            )
    return out
