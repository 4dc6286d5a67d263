"""`dlpipe synth`: determinism, phase fractions, the CVAT export's structure."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from lxml import etree

from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.synth import annotated_slices, make_demo


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _small(**kw: object) -> dict:
    params = defaults()["synth"] | {"shape": [24, 64, 64], "annotated_slices": 3}
    return params | kw


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    make_demo(tmp_path / "a", _small(seed=5))
    make_demo(tmp_path / "b", _small(seed=5))
    make_demo(tmp_path / "c", _small(seed=6))
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert len(a) == 3 + 1 + 1 + 3  # volume, labels, pore instances, metadata, xml, 3 images
    assert a["volume.tif"] != c["volume.tif"]


def test_phase_fractions_match_request(demo_dir: Path) -> None:
    labels = tifffile.imread(demo_dir / "labels.tif")
    assert labels.shape == (64, 128, 128) and labels.dtype == np.uint8
    frac = np.bincount(labels.ravel(), minlength=3) / labels.size
    asked = defaults()["synth"]
    assert abs(frac[1] - asked["fibre_fraction"]) <= 0.02
    assert abs(frac[2] - asked["pore_fraction"]) <= 0.02
    assert 0.005 <= frac[2] <= 0.01  # the 0.5-1 % of small pores
    meta = json.loads((demo_dir / "metadata.json").read_text())
    assert meta["phase_fractions"]["fibre"] == pytest.approx(frac[1])


@pytest.mark.parametrize("target", [0.10, 0.25])
def test_other_fractions_are_honoured(tmp_path: Path, target: float) -> None:
    meta = make_demo(tmp_path / "d", _small(fibre_fraction=target, pore_fraction=0.02))
    assert abs(meta["phase_fractions"]["fibre"] - target) <= 0.02
    assert abs(meta["phase_fractions"]["pore"] - 0.02) <= 0.02


def test_image_model_separates_phases(demo_dir: Path) -> None:
    vol = tifffile.imread(demo_dir / "volume.tif")
    labels = tifffile.imread(demo_dir / "labels.tif")
    assert vol.dtype == np.uint8
    means = [vol[labels == k].mean() for k in range(3)]
    assert means[2] < means[0] < means[1]  # pore dark, fibre (glass) bright
    # noise: the matrix is not flat
    assert vol[labels == 0].std() > 3


def test_uint16_output(tmp_path: Path) -> None:
    make_demo(tmp_path / "u", _small(dtype="uint16"))
    vol = tifffile.imread(tmp_path / "u" / "volume.tif")
    assert vol.dtype == np.uint16 and vol.max() > 255


def test_cvat_xml_has_cvat_structure(demo_dir: Path) -> None:
    root = etree.parse(str(demo_dir / "cvat" / "annotations.xml")).getroot()
    assert root.tag == "annotations"
    assert root.findtext("version") == "1.1"
    labels = [lab.findtext("name") for lab in root.iterfind("meta/task/labels/label")]
    assert labels == ["fibre", "pore"]
    images = root.findall("image")
    assert len(images) == 8
    meta = json.loads((demo_dir / "metadata.json").read_text())
    for i, (img, z) in enumerate(zip(images, meta["annotated_slices"], strict=True)):
        assert img.get("id") == str(i)
        assert img.get("name") == f"slice_{z:04d}.png"
        assert (img.get("width"), img.get("height")) == ("128", "128")
        assert (demo_dir / "cvat" / "images" / img.get("name")).is_file()
        assert img.findall("ellipse") and all(
            e.get("label") == "fibre" for e in img.iter("ellipse")
        )
        for e in img.iter("ellipse"):
            assert float(e.get("rx")) >= float(e.get("ry")) == pytest.approx(5.0)
        for p in img.iter("polygon"):
            assert p.get("label") == "pore" and len(p.get("points").split(";")) >= 3
    assert sum(len(img.findall("polygon")) for img in images) > 0


def test_annotated_slices_inside_range() -> None:
    assert annotated_slices(64, 8, (0.05, 0.65)) == [3, 8, 14, 19, 25, 30, 36, 41]
    assert annotated_slices(10, 0, (0, 1)) == []


def test_existing_output_is_refused(tmp_path: Path) -> None:
    make_demo(tmp_path / "x", _small())
    before = _digest(tmp_path / "x")
    with pytest.raises(UserError, match="output exists"):
        make_demo(tmp_path / "x", _small(seed=9))
    assert _digest(tmp_path / "x") == before
    assert not list(tmp_path.glob(".x.partial"))


def test_cli_end_to_end_with_tracking(tmp_path: Path, cli_env: dict[str, str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"results: {tmp_path / 'res'}\ntracking: {{experiment: t}}\n")
    out = subprocess.run(
        [
            "dlpipe",
            "-c",
            str(cfg),
            "synth",
            str(tmp_path / "d"),
            "--seed",
            "2",
            "--shape",
            "20",
            "48",
            "48",
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert tifffile.imread(tmp_path / "d" / "volume.tif").shape == (20, 48, 48)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'res' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["stage"] == "synth" and run.info.status == "FINISHED"
    assert run.data.params["seed"] == "2"
    assert 0.13 <= run.data.metrics["fraction_fibre"] <= 0.21  # one fibre is 3 % here
