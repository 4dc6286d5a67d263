"""``dlpipe tile --instances``: uint32 object ids under labels/<stem>, read back by evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from dlpipe.errors import UserError
from dlpipe.volumes.tile import tile_volume


def test_tile_stores_instances_beside_the_labels(tmp_path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (12, 20, 20)).astype(np.uint8)
    ids = np.zeros(img.shape, np.uint32)
    ids[2:6, 3:9, 3:9] = 70000  # above uint16
    ids[7:10, 10:15, 10:15] = 3
    tifffile.imwrite(tmp_path / "v.tif", img)
    tifffile.imwrite(tmp_path / "l.tif", (ids > 0).astype(np.uint8) * 2)
    tifffile.imwrite(tmp_path / "pore_instances.tif", ids)
    params = {"chunks": [4, 20, 20], "levels": 2}
    out = tmp_path / "v.zarr"
    res = tile_volume(
        tmp_path / "v.tif",
        out,
        labels=tmp_path / "l.tif",
        instances=tmp_path / "pore_instances.tif",
        params=params,
        progress=False,
    )
    root = zarr.open_group(str(out), mode="r")
    arr = root["labels/pore_instances/0"]
    assert arr.dtype == np.uint32 and np.array_equal(arr[...], ids)
    assert "phases" in dict(root["labels"].attrs)["ome"]["labels"]
    assert "pore_instances" in dict(root["labels"].attrs)["ome"]["labels"]
    info = dict(root.attrs)["dlpipe"]["instances"]
    assert info == {"name": "pore_instances", "objects": 2, "max_id": 70000}
    assert res.summary.startswith("tiled 12x20x20")
    from dlpipe.evaluation.instance_volumes import open_instance_volume

    got, _store, name = open_instance_volume(out, "truth")
    assert name == "pore_instances" and got.shape == ids.shape


def test_instances_of_another_shape_are_refused(tmp_path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((4, 8, 8), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((4, 8, 9), np.uint32), photometric="minisblack")
    with pytest.raises(UserError, match="instances shape"):
        tile_volume(tmp_path / "v.tif", tmp_path / "o.zarr", instances=tmp_path / "i.tif")
    assert not (tmp_path / "o.zarr").exists()


def test_the_one_instance_array_is_found_else_the_candidates_are_named(tmp_path) -> None:
    from dlpipe.stores.instance_labels import find_instance_labels

    root = zarr.open_group(str(tmp_path / "v.zarr"), mode="w")
    labels = root.require_group("labels")
    labels.require_group("phases").create_array("0", shape=(2, 4, 4), dtype="uint8")
    with pytest.raises(UserError, match=r"no instance label array .*labels: phases"):
        find_instance_labels(tmp_path / "v.zarr", "tiled volume", "--set x")
    labels.require_group("pore_instances").create_array("0", shape=(2, 4, 4), dtype="uint32")
    assert find_instance_labels(tmp_path / "v.zarr", "tiled volume", "--set x") == "pore_instances"
    labels.require_group("instances").create_array("0", shape=(2, 4, 4), dtype="uint32")
    with pytest.raises(UserError, match=r"several .*\(instances, pore_instances\).*--set x=NAME"):
        find_instance_labels(tmp_path / "v.zarr", "tiled volume", "--set x")
