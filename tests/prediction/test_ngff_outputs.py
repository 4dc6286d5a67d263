"""PRED.zarr and CLEAN.zarr are NGFF 0.5 images like VOL.zarr: `ome_zarr info` and
ome-zarr-models read them, with the input's units, voxel size and pyramid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from _predict_helpers import phantom

from dlpipe.config import defaults
from dlpipe.postprocess import postprocess
from dlpipe.prediction import predict_volume
from dlpipe.stores.pyramid import downsample_mode
from dlpipe.volumes import tile_volume

ome_zarr_models = pytest.importorskip("ome_zarr_models", reason="pip install ome-zarr-models")


@pytest.fixture()
def outputs(models: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """VOL.zarr (3 levels, 0.5 µm z, 0.25 µm y x) -> PRED.zarr -> CLEAN.zarr."""
    image, _ = phantom((12, 40, 48), seed=3)
    tifffile.imwrite(tmp_path / "scan.tif", image)
    params = defaults()["tile"] | {
        "voxel_size": [0.5, 0.25, 0.25],
        "unit": "micrometer",
        "levels": 3,
        "chunks": [8, 32, 32],
    }
    vol = tmp_path / "vol.zarr"
    tile_volume(tmp_path / "scan.tif", vol, params=params, progress=False)
    pred = tmp_path / "pred.zarr"
    predict_volume(models["2d"], vol, pred, {"block": [4, 32, 32], "threads": 1}, progress=False)
    clean = tmp_path / "clean.zarr"
    postprocess(pred, clean, defaults()["postprocess"])
    return {"vol": vol, "pred": pred, "clean": clean}


@pytest.mark.parametrize("which", ["pred", "clean"])
def test_label_volume_is_a_valid_ngff_image(outputs: dict[str, Path], which: str) -> None:
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    path = outputs[which]
    root = zarr.open_group(path, mode="r")
    image = Image.from_zarr(root)  # raises on invalid metadata or missing arrays
    ms = image.ome_attributes.multiscales[0]
    assert [a.unit for a in ms.axes] == ["micrometer"] * 3
    scales = [d.coordinateTransformations[0].scale for d in ms.datasets]
    assert scales == [[0.5, 0.25, 0.25], [1.0, 0.5, 0.5], [2.0, 1.0, 1.0]]  # the input's pyramid
    label = ImageLabel.from_zarr(root["labels/phases"])
    attrs = label.ome_attributes.image_label
    assert attrs.source.image == "../../"
    assert [p.label_value for p in attrs.properties] == [0, 1, 2]
    assert [p.model_extra["name"] for p in attrs.properties] == ["matrix", "fibre", "pore"]
    assert [tuple(c.rgba) for c in attrs.colors][:2] == [(0, 0, 0, 0), (31, 119, 180, 255)]
    lab = root["labels/phases"]
    assert [lab[k].shape for k in "012"] == [(12, 40, 48), (6, 20, 24), (3, 10, 12)]
    level0 = lab["0"][:]
    assert np.array_equal(root["0"][:], level0)  # the root image holds the label values
    # mode downsampling, slab by slab, equals the mode of the whole volume
    assert np.array_equal(lab["1"][:], downsample_mode(level0))
    assert np.array_equal(lab["2"][:], downsample_mode(downsample_mode(level0)))
    assert root.attrs["ome"]["omero"]["channels"][0]["active"] is False  # hidden in napari
    # napari-ome-zarr names the label layer "<multiscales name>: <OMERO channel label>"
    title = lab.attrs["ome"]["omero"]["channels"][0]
    assert (lab.attrs["ome"]["multiscales"][0]["name"], title["label"]) == ("phases", path.stem)
    assert title["active"] is True  # the prediction shows over the scan
    info = subprocess.run(
        [str(Path(sys.executable).parent / "ome_zarr"), "info", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Multiscales" in info and "Label" in info and "(3, 10, 12)" in info


def test_prediction_level0_unchanged_by_the_pyramid(outputs: dict[str, Path]) -> None:
    """The label bytes of level 0 are those the blocks wrote (the argmax of the model)."""
    lab = zarr.open_group(outputs["pred"], mode="r")["labels/phases/0"]
    assert lab.dtype == np.uint8 and lab.chunks == (4, 32, 32)
    assert set(np.unique(lab[:])) <= {0, 1, 2}
