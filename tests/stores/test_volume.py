"""Opening a tiled volume, and label volumes written with NGFF attributes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from dlpipe.errors import UserError
from dlpipe.stores import ngff
from dlpipe.stores.marker import mark_complete
from dlpipe.stores.volume import dlpipe_attrs, open_labels, open_volume, source_grid, write_labels


def _tiled(path: Path, *, complete: bool = True) -> np.ndarray:
    image = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    root = zarr.open_group(str(path), mode="w")
    root.create_array("0", data=image, chunks=(2, 5, 6))
    root.create_array("labels/phases/0", data=(image % 3).astype(np.uint8), chunks=(2, 5, 6))
    root.attrs.update(ngff.image_attrs("v", 1, [0.5, 0.25, 0.25], "micrometer", "0.5"))
    root.attrs["dlpipe"] = {"labels": {"name": "phases"}, "classes": ["a", "b", "c"]}
    if complete:
        mark_complete(path)
    return image


def test_open_volume(tmp_path: Path) -> None:
    image = _tiled(tmp_path / "v.zarr")
    vol = open_volume(tmp_path / "v.zarr")
    np.testing.assert_array_equal(vol.image[:], image)
    np.testing.assert_array_equal(vol.labels[:], image % 3)
    assert vol.labels_name == "phases" and vol.level == "0"
    assert vol.attrs["classes"] == ["a", "b", "c"]
    assert (vol.axes, vol.voxel_size, vol.unit) == (
        ["z", "y", "x"],
        [0.5, 0.25, 0.25],
        "micrometer",
    )
    assert open_volume(tmp_path / "v.zarr", labels="other").labels is None


def test_open_volume_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="volume not found"):
        open_volume(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not a Zarr group"):
        open_volume(tmp_path / "plain")
    _tiled(tmp_path / "half.zarr", complete=False)
    with pytest.raises(UserError) as err:
        open_volume(tmp_path / "half.zarr")
    assert str(err.value) == (
        f"{tmp_path / 'half.zarr'}: incomplete volume (no .dlpipe_complete marker): "
        "re-run `dlpipe tile` to finish it"
    )
    _tiled(tmp_path / "v.zarr")
    with pytest.raises(UserError, match="no image level '3'"):
        open_volume(tmp_path / "v.zarr", level="3")


def _blocks(labels: np.ndarray):
    for z in range(0, labels.shape[0], 2):
        yield (slice(z, z + 2), slice(None), slice(None)), labels[z : z + 2]


def test_write_labels_carries_voxel_size_units_and_classes(tmp_path: Path) -> None:
    image = _tiled(tmp_path / "v.zarr")
    lab = (image % 3).astype(np.uint8)
    attrs = dlpipe_attrs(tmp_path / "v.zarr")
    out = write_labels(
        tmp_path / "c.zarr",
        _blocks(lab),
        lab.shape,
        (2, 8, 8),
        attrs=attrs,
        like=tmp_path / "v.zarr",
    )
    assert (out / ".dlpipe_complete").read_text() == "complete\n"
    root = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(root["labels/phases/0"][:], lab)
    assert root["labels/phases/0"].chunks == (2, 5, 6)
    assert root.attrs["dlpipe"] == attrs
    assert dict(root["labels"].attrs) == {"ome": {"version": "0.5", "labels": ["phases"]}}
    want = ngff.label_image_attrs(
        "phases",
        1,
        [0.5, 0.25, 0.25],
        "micrometer",
        "0.5",
        classes=["a", "b", "c"],
        title="c",  # napari's layer "phases: c", shown
        visible=True,
    )
    assert dict(root["labels/phases"].attrs) == want
    props = want["ome"]["image-label"]["properties"]
    assert props == [
        {"label-value": 0, "name": "a"},
        {"label-value": 1, "name": "b"},
        {"label-value": 2, "name": "c"},
    ]
    # a store derived from a label volume carries the same grid
    assert source_grid(out) == ([0.5, 0.25, 0.25], "micrometer")
    np.testing.assert_array_equal(open_labels(out)[:], lab)


def test_write_labels_without_classes_colours_the_values_written(tmp_path: Path) -> None:
    lab = np.zeros((2, 3, 3), np.uint8)
    lab[1, 1, 1] = 4
    out = write_labels(tmp_path / "o.zarr", _blocks(lab), lab.shape, (2, 3, 3))
    label = zarr.open_group(str(out), mode="r")["labels/phases"].attrs["ome"]
    assert [c["label-value"] for c in label["image-label"]["colors"]] == [0, 4]
    assert "properties" not in label["image-label"]
    scale = label["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 1.0, 1.0] and "unit" not in label["multiscales"][0]["axes"][0]
    assert source_grid(tmp_path / "missing.tif") == (None, None)
