"""Every command ends with one result line: scores to 3 digits, counts, the output path.

Each command runs as a subprocess (the console script) on a tiny demo, one after another.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# a float with more than 3 decimals, e.g. 0.7586957206546844
LONG_FLOAT = re.compile(r"\d\.\d{4,}")
SCORE = r"\d\.\d{3}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """``run("tile", ...)`` -> the stdout lines of ``dlpipe -c c.yaml tile ...`` in a tmp dir."""
    root = tmp_path_factory.mktemp("cli")
    (root / "c.yaml").write_text(
        "tracking: {enabled: false}\n"
        "synth: {shape: [24, 64, 64], annotated_slices: 4}\n"
        "train: {epochs: 1, steps_per_epoch: 2}\n"
    )
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    def _run(*args: str) -> list[str]:
        proc = subprocess.run(
            ["dlpipe", "-c", "c.yaml", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stdout.strip().splitlines()
        assert lines, f"dlpipe {args[0]} printed nothing"
        assert not LONG_FLOAT.search(proc.stdout), proc.stdout
        return lines

    _run.root = root  # type: ignore[attr-defined]
    return _run


def test_pipeline_result_lines(run) -> None:
    last = run("synth", "demo")[-1]
    assert re.fullmatch(
        rf"wrote a 24x64x64 scan \(fibre {SCORE}, pore {SCORE}\), labels and "
        r"4 annotated slices: demo",
        last,
    ), last
    last = run("tile", "demo/volume.tif", "--labels", "demo/labels.tif", "--out", "vol.zarr")[-1]
    assert re.fullmatch(
        r"tiled 24x64x64 uint8 voxels into \d+ levels \([\d.]+ MB/s\): vol\.zarr", last
    ), last
    last = run("slices", "vol.zarr", "--out", "task", "--count", "2")[-1]
    assert last.startswith("wrote 2 slices") and last.endswith(": task"), last
    last = run(
        "cvat", "demo/cvat/annotations.xml", "--images", "demo/cvat/images", "--out", "cvat.zarr"
    )[-1]
    assert re.fullmatch(r"converted 4 images, \d+ objects \(3 classes\): cvat\.zarr", last), last
    last = run("train", "vol.zarr", "--out", "model")[-1]
    assert re.fullmatch(
        rf"trained 2d U-Net \(\d+ parameters\), best epoch 1, val mean Jaccard "
        rf"{SCORE}: model",
        last,
    ), last
    last = run("predict", "model", "vol.zarr", "--out", "pred.zarr")[-1]
    assert re.fullmatch(r"predicted \d+ of \d+ blocks .*: pred\.zarr", last), last
    last = run("postprocess", "pred.zarr", "--out", "clean.zarr")[-1]
    assert re.fullmatch(r"cleaned \d+ of \d+ blobs, \d+ voxels changed: clean\.zarr", last), last
    per_class = rf"\(matrix {SCORE}, fibre {SCORE}, pore {SCORE}\) on \d+ slices"
    last = run("evaluate", "clean.zarr", "vol.zarr", "--out", "model/clean_metrics.json")[-1]
    assert re.fullmatch(rf"mean Jaccard {SCORE} {per_class}: model/clean_metrics\.json", last), last
    for method in ("otsu", "rf"):
        last = run(
            "baseline",
            "vol.zarr",
            "vol.zarr",
            "--method",
            method,
            "--metadata",
            "demo/metadata.json",
            "--out",
            f"{method}.zarr",
            "--metrics",
            f"{method}/clean_metrics.json",
        )[-1]
        assert re.fullmatch(rf"{method}: mean Jaccard {SCORE} {per_class}: {method}\.zarr", last), (
            last
        )
    lines = run(
        "summary",
        "model/clean_metrics.json",
        "--models",
        ".",
        "--baseline",
        "rf/clean_metrics.json",
        "--baseline",
        "otsu/clean_metrics.json",
        "--out",
        "summary",
    )
    assert any(line.endswith(str(Path("summary") / "models.csv")) for line in lines), lines
    assert re.fullmatch(rf"best model: .+ \({SCORE}\)", lines[-1]), lines
    # the report's tables are HTML (rendered in the page), scores to 3 digits, no raw floats
    root = run.root
    metrics_html = (root / "model" / "clean_metrics.html").read_text()
    assert "<table>" in metrics_html and "<td class=k>fibre</td>" in metrics_html
    assert not LONG_FLOAT.search(metrics_html)
    models_html = (root / "summary" / "models.html").read_text()
    assert "best model: model" in models_html and ">rf<" in models_html
    assert not LONG_FLOAT.search(models_html)
    cards_html = (root / "summary" / "cards.html").read_text()
    assert "<th>model</th>" in cards_html and "architecture.depth" in cards_html


def test_import_result_line(run, shared_data: Path) -> None:
    last = run(
        "import", "dsb2018", str(shared_data / "dsb2018" / "stage1_train"), "--out", "dsb.zarr"
    )[-1]
    assert re.fullmatch(r"imported \d+ images, \d+ objects: dsb\.zarr", last), last
