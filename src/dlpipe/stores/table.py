"""The objects table of a dataset Zarr: Parquet (default) or CSV, written in batches.

One row per object (and per tag) of ``dlpipe cvat`` / ``dlpipe import``, with the columns
:data:`COLUMNS`, in ``DATASET/objects.parquet`` (or ``objects.csv``).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError

__all__ = [
    "COLUMNS",
    "FORMATS",
    "INT_COLUMNS",
    "TEXT_COLUMNS",
    "ObjectsTable",
    "read_objects",
    "table_path",
]

FORMATS = {"parquet": "objects.parquet", "csv": "objects.csv"}
COLUMNS = [
    "image",
    "image_name",
    "subset",
    "instance_id",
    "kind",
    "label",
    "class_id",
    "x1",
    "y1",
    "x2",
    "y2",
    "area",
    "occluded",
    "z_order",
    "group_id",
    "source",
    "track_id",
    "attributes",
]
# Every column but these text ones holds integers.
TEXT_COLUMNS = frozenset({"image_name", "subset", "kind", "label", "source", "attributes"})
INT_COLUMNS = frozenset(COLUMNS) - TEXT_COLUMNS
_BATCH_ROWS = 16384


def _schema() -> Any:
    import pyarrow as pa

    fields = []
    for name in COLUMNS:
        if name == "attributes":
            fields.append(pa.field(name, pa.map_(pa.string(), pa.string())))
        elif name == "occluded":
            fields.append(pa.field(name, pa.int8()))
        elif name in INT_COLUMNS:
            fields.append(pa.field(name, pa.int64()))
        else:
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)


class ObjectsTable:
    """Appends object rows (dicts with :data:`COLUMNS`) to ``folder/objects.<format>``.

    Parquet: one row group per 16,384 rows, ``attributes`` as map<string, string>.
    CSV: a header line, ``attributes`` as a JSON object.
    """

    def __init__(self, folder: Path, fmt: str = "parquet") -> None:
        if fmt not in FORMATS:
            raise UserError(f"objects table format {fmt!r}: use one of {sorted(FORMATS)}")
        self.fmt = fmt
        self.path = Path(folder) / FORMATS[fmt]
        self.rows: list[dict] = []
        self._writer: Any = None
        self._file: Any = None
        if fmt == "csv":
            self._file = open(self.path, "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
            self._writer.writeheader()

    def add(self, rows: list[dict]) -> None:
        """Append ``rows`` (dicts with :data:`COLUMNS`); Parquet rows are written in batches."""
        if self.fmt == "csv":
            for row in rows:
                row = dict(row)
                row["attributes"] = json.dumps(row["attributes"], sort_keys=True)
                self._writer.writerow(row)
            return
        self.rows += rows
        if len(self.rows) >= _BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _schema()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, schema, compression="zstd")
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=schema))
        self.rows = []

    def close(self) -> None:
        """Write the rows still buffered and close the file."""
        if self.fmt == "csv":
            if self._file is not None:
                self._file.close()
                self._file = None
            return
        self._flush()
        self._writer.close()

    def renumber(self, new_of_old: np.ndarray) -> None:
        """Rewrite the ``image`` column through ``new_of_old`` (after reordering images)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        if self.fmt == "csv":
            with open(self.path, newline="") as src, open(tmp, "w", newline="") as dst:
                w = csv.DictWriter(dst, fieldnames=COLUMNS)
                w.writeheader()
                for row in csv.DictReader(src):
                    row["image"] = int(new_of_old[int(row["image"])])
                    w.writerow(row)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pq.read_table(self.path)
            image = new_of_old[table.column("image").to_numpy()]
            i = table.schema.get_field_index("image")
            table = table.set_column(i, "image", pa.array(image, pa.int64()))
            pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, self.path)


def table_path(dataset: str | Path) -> Path:
    """The objects table of a dataset (Parquet, else CSV)."""
    for name in FORMATS.values():
        path = Path(dataset) / name
        if path.is_file():
            return path
    raise UserError("no objects table (objects.parquet or objects.csv)", path=dataset)


def read_objects(dataset: str | Path) -> list[dict[str, Any]]:
    """The objects table of a converted dataset as a list of dicts with typed values.

    Integer columns are ints and ``attributes`` a dict, from Parquet or CSV alike. For
    a DataFrame: ``pandas.read_parquet(table_path(OUT))``.
    """
    path = table_path(dataset)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        for row in rows:
            row["attributes"] = dict(row["attributes"] or [])
        return rows
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for k in INT_COLUMNS:
            row[k] = int(row[k])
        row["attributes"] = json.loads(row["attributes"])
    return rows
