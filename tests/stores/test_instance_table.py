"""The instance table that every instance model writes and evaluation reads."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from dlpipe.stores.instance_table import (
    COLUMNS,
    VOLUME_COLUMNS,
    read_instance_scores,
    write_instance_table,
)


def _row(image: int, instance: int, score: float, **extra: int) -> dict:
    return {
        "image": image,
        "image_name": f"slice_{image:04d}.png",
        "z": image,
        "instance_id": instance,
        "class_id": 1,
        "class_name": "pore",
        "score": score,
        "x1": 2,
        "y1": 3,
        "x2": 9,
        "y2": 8,
        "area": 30,
        **extra,
    }


def test_image_rows_round_trip_with_types(tmp_path: Path) -> None:
    rows = [_row(0, 1, 0.9), _row(0, 2, 0.5), _row(3, 1, 1.0)]
    write_instance_table(tmp_path, rows)
    lines = (tmp_path / "instances.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1] == "0,slice_0000.png,0,1,1,pore,0.9,2,3,9,8,30"
    table = pq.read_table(tmp_path / "instances.parquet")
    assert table.column_names == COLUMNS
    assert str(table.schema.field("score").type) == "double"
    assert str(table.schema.field("class_name").type) == "string"
    assert str(table.schema.field("area").type) == "int64"
    assert read_instance_scores(tmp_path) == {0: {1: (1, 0.9), 2: (1, 0.5)}, 3: {1: (1, 1.0)}}


def test_volume_rows_add_z2_and_no_table_reads_none(tmp_path: Path) -> None:
    assert VOLUME_COLUMNS.index("z2") == VOLUME_COLUMNS.index("z") + 1
    write_instance_table(tmp_path, [_row(0, 7, 0.8, z2=12)], VOLUME_COLUMNS)
    assert pq.read_table(tmp_path / "instances.parquet").column("z2").to_pylist() == [12]
    assert read_instance_scores(tmp_path) == {0: {7: (1, 0.8)}}
    assert read_instance_scores(tmp_path / "elsewhere") is None
