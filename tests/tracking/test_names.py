"""The run-name and tag vocabulary without MLflow: names from paths, lineage from attributes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlpipe.labels import config_class_names
from dlpipe.tracking import dataset_name, family_params, lineage, run_name
from dlpipe.training import write_labelled_volume


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("results/demo/volume.zarr", "demo"),
        ("results/demo/cvat.zarr", "demo"),
        ("results/demo/cvat/annotations.xml", "demo"),
        ("results/demo/volume.tif", "demo"),
        ("/data/scan_07.zarr", "scan_07"),
        ("/data/scan_07.ome.zarr", "scan_07"),
        ("/data/fibres/labels.tif", "fibres"),
        ("scan.h5:/entry/data", "scan"),
        ("", ""),
    ],
)
def test_dataset_name_from_path(path: str, name: str) -> None:
    assert dataset_name(path) == name


def test_run_name_leaves_out_unknown_parts() -> None:
    assert run_name("evaluate", "demo", "rf") == "evaluate demo/rf"
    assert run_name("synth", "demo") == "synth demo"
    assert run_name("summary", "", "") == "summary"


def test_family_params_drop_the_other_family() -> None:
    params = {"lr": 0.01, "architecture": {"depth": 4}, "maskrcnn": {"backbone": "resnet50"}}
    assert family_params(params, "unet") == {"lr": 0.01, "architecture": {"depth": 4}}
    assert family_params(params, "maskrcnn") == params


def test_config_class_names_only_for_cvat_background() -> None:
    config = ["matrix", "fibre", "pore"]
    assert config_class_names(["background", "fibre", "pore"], config) == config
    assert config_class_names(["background", "fibre"], config) is None  # count differs
    assert config_class_names(["background", "pore", "fibre"], config) is None  # order differs
    assert config_class_names(["air", "fibre", "pore"], config) is None  # not CVAT's
    assert config_class_names(["background", "fibre", "pore"], None) is None


def test_lineage_reads_model_dir_and_run_id(tmp_path: Path) -> None:
    model = tmp_path / "models" / "f16"
    model.mkdir(parents=True)
    (model / "card.json").write_text(json.dumps({"model": "unet", "mlflow_run_id": "abc123"}))
    pred = write_labelled_volume(
        tmp_path / "unet" / "f16" / "prediction.zarr",
        np.zeros((2, 4, 4), np.float32),
        np.zeros((2, 4, 4), np.uint8),
        chunks=(2, 4, 4),
    )
    import zarr

    root = zarr.open_group(str(pred), mode="r+")
    meta = dict(root.attrs["dlpipe"])
    meta["prediction"] = {"model_dir": str(model), "volume": {"path": "/x/demo/volume.zarr"}}
    root.attrs["dlpipe"] = meta
    assert lineage(pred) == {
        "model_dir": str(model),
        "volume": "/x/demo/volume.zarr",
        "model": "f16",
        "kind": "unet",
        "train_run_id": "abc123",
    }
    meta.pop("prediction")
    meta["baseline"] = {"method": "rf"}
    root.attrs["dlpipe"] = meta
    got = lineage(pred)
    assert (got["model"], got["kind"], got.get("train_run_id")) == ("rf", "baseline", None)
