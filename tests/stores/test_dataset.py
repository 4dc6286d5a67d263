"""The dataset Zarr: opener and writer pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from dlpipe.errors import UserError
from dlpipe.stores.dataset import DatasetWriter, finish_dataset, open_dataset


def test_writer_grows_reorders_and_opens(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    writer = DatasetWriter(group, 4, 5, chunk=2)
    for i in range(3):
        writer.add(
            images=np.full((4, 5), i, np.uint8),
            semantic=np.full((4, 5), i % 2, np.uint8),
            instances=np.full((4, 5), i, np.uint32),
        )
    writer.finish(np.array([2, 0, 1]))
    with pytest.raises(UserError, match="incomplete dataset"):
        open_dataset(path)
    finish_dataset(path, group, {"classes": ["background", "x"]})
    assert (path / ".dlpipe_complete").read_text() == "complete\n"
    data = open_dataset(path, arrays=("images", "semantic", "instances"))
    assert data.classes == ["background", "x"] and data.keys == {"images", "semantic", "instances"}
    assert data["images"].shape == (3, 4, 5) and data["images"].chunks == (1, 2, 2)
    assert [int(data["images"][i, 0, 0]) for i in range(3)] == [2, 0, 1]
    assert data["instances"].dtype == np.uint32
    assert tuple(data["semantic"].metadata.dimension_names) == ("n", "y", "x")


def test_open_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset not found"):
        open_dataset(tmp_path / "none.zarr")
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    group.create_array("images", shape=(1, 2, 2), dtype="uint8")
    with pytest.raises(UserError, match="not an instance dataset: no semantic, instances array"):
        open_dataset(
            tmp_path / "s.zarr",
            arrays=("images", "semantic", "instances"),
            what="an instance dataset",
        )
