"""CLEAN.zarr carries the NGFF label metadata of its input (voxel size, unit, classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from dlpipe.postprocess import postprocess
from dlpipe.stores import ngff

PARAMS = {"labels_name": "phases", "connectivity": 26, "chunks": None, "rules": []}


def test_clean_zarr_has_the_ngff_label_attrs_of_its_input(tmp_path: Path) -> None:
    lab = np.zeros((6, 16, 16), np.uint8)
    lab[:, :, 8:] = 1
    lab[2:4, 2:5, 2:5] = 2
    root = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    root.attrs["dlpipe"] = {"classes": ["matrix", "fibre", "pore"], "complete": True}
    root.create_group("labels").attrs.update(ngff.labels_group_attrs(["phases"], "0.5"))
    grp = root["labels"].create_group("phases")
    grp.attrs.update(
        ngff.label_image_attrs(
            "phases", 1, [2.0, 0.5, 0.5], "micrometer", "0.5", classes=["matrix", "fibre", "pore"]
        )
    )
    grp.create_array("0", data=lab, chunks=(3, 8, 8))
    (tmp_path / "p.zarr" / ".dlpipe_complete").write_text("")  # as dlpipe writes it
    postprocess(tmp_path / "p.zarr", tmp_path / "c.zarr", PARAMS)
    clean = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    np.testing.assert_array_equal(clean["labels/phases/0"][:], lab)  # no rule: unchanged
    assert dict(clean["labels"].attrs) == dict(root["labels"].attrs)
    attrs = dict(clean["labels/phases"].attrs)
    title = attrs["ome"].pop("omero")["channels"][0]  # napari's layer "phases: c"
    assert (title["label"], title["active"]) == ("c", True)
    assert attrs == dict(grp.attrs)
    assert clean.attrs["dlpipe"]["classes"] == ["matrix", "fibre", "pore"]
    assert "complete" not in clean.attrs["dlpipe"]
