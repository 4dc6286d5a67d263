"""Datasets in the config: the demo and a real scan of your own (qim3d's cement CT) with a
CVAT export made as a user would (`dlpipe slices` on the tiled scan, zipped with its images),
run end to end by one `snakemake --cores 2 --configfile ...`; then nothing is left to do.
Bad dataset entries are refused with one line naming the dataset and the key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from dlpipe.stores.volume import dlpipe_attrs

ROOT = Path(__file__).resolve().parents[2]
SCAN = "qim3d/qim3d/examples/cement_128x128x128.tif"
MODEL = "f4-d2-ce-2d-sall"
CLASSES = ["pore", "paste", "grain"]
ANNOTATED_Z = (12, 40, 68)  # inside the training slab of the 0.7/0.1/0.2 z-split (z < 89)
TINY = {
    "results": "results",
    "tracking": {"enabled": True, "experiment": "wf-datasets"},
    "synth": {"shape": [16, 64, 64], "annotated_slices": 4},
    "tile": {"chunks": [8, 32, 32], "levels": 2},
    "train": {
        "epochs": 2,
        "steps_per_epoch": 4,
        "batch_size": 2,
        "patch_size": [32, 32],
        "workers": 0,
        "val_max_patches": 4,
        "torch_threads": 1,
    },
    "sweep": {"base_filters": [4], "depth": [2], "loss": ["ce"], "annotated_slices": [None]},
    "predict": {"block": [16, 64, 64], "batch_size": 4, "torch_threads": 1},
    "baselines": {"rf": {"n_estimators": 5, "max_samples": 2000}},
    "postprocess": {"rules": [{"phase": 2, "min_size": 4}]},
    "evaluation": {"overlays": 1},
    "suggest": {"count": 2},
}
TINY_SUGGEST = 2


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DLPIPE_PARENT_RUN_ID", None)
    return env


def _run(work: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(cmd), cwd=work, env=_env(), capture_output=True, text=True, timeout=900, check=False
    )


def smk(work: Path, config: str, *args: str) -> subprocess.CompletedProcess:
    # --configfile takes several values: it goes last.
    return _run(
        work,
        "snakemake",
        *args,
        "--cores",
        "2",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / config),
    )


def _threshold(scan: np.ndarray) -> np.ndarray:
    """Three phases by grey value (0 dark, 1 middle, 2 bright): the 'truth' of the test."""
    lo, hi = np.percentile(scan, [33, 67])
    return np.digitize(scan, [lo, hi]).astype(np.uint8)


def _cvat_export(work: Path, scan_path: Path, truth: Path) -> Path:
    """A CVAT for images 1.1 export zip (annotations.xml + images/) of three z-slices: the
    images and masks of `dlpipe slices --labels` on the tiled scan, as CVAT would export them."""
    prep = work / "prep"
    off = ["--config-json", json.dumps({"tracking": {"enabled": False}})]
    tiled = prep / "cement.zarr"
    out = _run(
        work, "dlpipe", *off, "tile", str(scan_path), "--labels", str(truth), "--out", str(tiled)
    )
    assert out.returncode == 0, out.stderr[-2000:]
    at = ",".join(str(z) for z in ANNOTATED_Z)
    task = prep / "task"
    out = _run(
        work,
        "dlpipe",
        *off,
        "slices",
        str(tiled),
        "--labels",
        str(tiled),
        "--classes",
        ",".join(CLASSES),
        "--at",
        at,
        "--out",
        str(task),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    export = work / "cvat_export" / "cement_task.zip"
    export.parent.mkdir()
    with zipfile.ZipFile(task / "annotations.zip") as zin, zipfile.ZipFile(export, "w") as zout:
        zout.writestr("annotations.xml", zin.read("annotations.xml"))
        for png in sorted(task.rglob("*.png")):
            zout.write(png, f"images/{png.name}")
    return export


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    scan_path = shared_data / SCAN
    if not scan_path.is_file():
        pytest.skip(f"{scan_path} not found (the shared data has no qim3d cement scan)")
    work = tmp_path_factory.mktemp("datasets")
    scan = tifffile.imread(scan_path)
    truth = work / "cement_truth.tif"
    tifffile.imwrite(truth, _threshold(scan))
    export = _cvat_export(work, scan_path, truth)
    cfg = json.loads(json.dumps(TINY))
    cfg["datasets"] = {
        "demo": {"synth": True},
        "cement": {
            "volume": str(scan_path),
            "annotations": str(export.relative_to(work)),
            "truth": truth.name,
            "classes": CLASSES,
            "voxel_size": [2.0, 2.0, 2.0],
            "tile": {"chunks": [16, 64, 64]},
            "models_from": ["demo"],
        },
    }
    (work / "two.yaml").write_text(yaml.safe_dump(cfg))
    first = smk(work, "two.yaml")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = smk(work, "two.yaml", "-n")
    return {"work": work, "cfg": cfg, "second": second}


def test_second_run_has_nothing_to_do(run: dict) -> None:
    out = run["second"]
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Nothing to be done" in out.stdout + out.stderr


def test_each_dataset_has_its_own_results(run: dict) -> None:
    res = run["work"] / "results"
    for ds in ("demo", "cement"):
        assert (res / ds / "volume.zarr/.dlpipe_complete").is_file()
        assert (res / ds / "cvat.zarr/.dlpipe_complete").is_file()
        assert (res / ds / "models" / MODEL / "card.json").is_file()
        rows = (res / ds / "summary/models.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows[1:]] == [MODEL, "otsu", "rf"], rows
        assert (run["work"] / "logs" / ds / "tile.log").is_file()
        assert (run["work"] / "logs/benchmarks" / ds / f"train_{MODEL}.tsv").is_file()
    # The demo alone is synthesised.
    assert (res / "demo/volume.tif").is_file() and not (res / "cement/volume.tif").exists()


def test_each_dataset_trains_on_its_placed_slices_and_suggests_the_next(run: dict) -> None:
    res = run["work"] / "results"
    card = json.loads((res / "cement/models" / MODEL / "card.json").read_text())
    assert card["params"]["labels"] == "annotations"  # the slices in the scan, not the truth
    # with a truth the z-slabs split them: none in the test slab; the last one validates
    assert card["split"]["train"] == {"z": list(ANNOTATED_Z[:-1])}
    assert card["split"]["val"] == {"z": [ANNOTATED_Z[-1]]}
    for ds in ("demo", "cement"):  # the suggest job: the slices to correct next, own model
        task = res / ds / "suggest" / MODEL
        manifest = json.loads((task / "slices.json").read_text())
        placed = dlpipe_attrs(res / ds / "volume.zarr")["annotations"]["slices"]["z"]
        picked = [e["index"] for e in manifest["slices"].values()]
        # at most suggest.count, a few slices apart and from the annotated ones
        assert 1 <= len(picked) <= TINY_SUGGEST and not set(picked) & set(placed), (picked, placed)
        assert manifest["suggested_from"].endswith(f"{ds}/unet/{MODEL}/prediction.zarr")
        assert (task / "annotations.zip").is_file()
        assert len(list(task.rglob("*.png"))) == len(picked)


def test_scan_settings_and_truth_are_the_datasets(run: dict) -> None:
    import zarr

    root = zarr.open_group(run["work"] / "results/cement/volume.zarr", mode="r")
    assert root["0"].shape == (128, 128, 128) and root["0"].chunks == (16, 64, 64)
    scale = root.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    assert scale["scale"] == [2.0, 2.0, 2.0]
    truth = tifffile.imread(run["work"] / "cement_truth.tif")
    assert np.array_equal(root["labels/phases/0"][60], truth[60])
    demo = zarr.open_group(run["work"] / "results/demo/volume.zarr", mode="r")
    assert demo["0"].shape == (16, 64, 64) and demo["0"].chunks == (8, 32, 32)


def test_annotations_are_placed_into_the_scan(run: dict) -> None:
    import zarr

    root = zarr.open_group(run["work"] / "results/cement/volume.zarr", mode="r")
    placed = root.attrs["dlpipe"]["annotations"]
    assert placed["slices"] == {"z": list(ANNOTATED_Z)}
    ann = root["labels/annotations/0"]
    truth = tifffile.imread(run["work"] / "cement_truth.tif")
    for z in ANNOTATED_Z:  # the export of the truth's slices goes back exactly
        assert np.array_equal(ann[z], truth[z])
    assert (ann[20] == 255).all()
    g = zarr.open_group(run["work"] / "results/cement/cvat.zarr", mode="r")
    assert g["semantic"].shape == (3, 128, 128)


def test_scores_name_the_dataset_classes(run: dict) -> None:
    res = run["work"] / "results/cement"
    metrics = json.loads((res / "unet" / MODEL / "clean_metrics.json").read_text())
    assert set(metrics["per_class"]) == set(CLASSES)
    rf = json.loads((res / "baselines/rf/metrics.json").read_text())
    # The baseline trained on the annotations placed into the scan, at their z-slices.
    trained = dlpipe_attrs(res / "baselines/rf/prediction.zarr")["baseline"]["training_slices"]
    assert trained == list(ANNOTATED_Z)
    # The threshold truth is easy: the random forest gets most of it right.
    assert rf["mean_jaccard"] > 0.5, rf["mean_jaccard"]


def test_a_model_of_one_dataset_predicts_another(run: dict) -> None:
    res = run["work"] / "results/cement"
    cross = res / "unet" / f"{MODEL}@demo"
    assert (cross / "prediction.zarr/.dlpipe_complete").is_file()
    assert (cross / "clean_metrics.json").is_file()

    def made_with(dataset: str, name: str) -> str:
        pred = run["work"] / "results" / dataset / "unet" / name / "prediction.zarr"
        return dlpipe_attrs(pred)["prediction"]["model_hash"]

    # The demo's model, not the scan's own, on the scan's volume.
    assert made_with("cement", f"{MODEL}@demo") == made_with("demo", MODEL)
    assert made_with("cement", f"{MODEL}@demo") != made_with("cement", MODEL)
    volume = dlpipe_attrs(cross / "prediction.zarr")["prediction"]["volume"]
    assert volume["path"].endswith("results/cement/volume.zarr")


def test_each_dataset_is_a_run_of_its_own_in_mlflow(run: dict) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run['work'] / 'results/mlflow.db'}")
    exp = client.get_experiment_by_name("wf-datasets")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    tiles = [r for r in runs if r.data.tags.get("stage") == "tile"]
    assert len(tiles) == 2  # one per dataset


def test_missing_path_is_refused_naming_dataset_and_key(run: dict) -> None:
    cfg = json.loads(json.dumps(run["cfg"]))
    cfg["datasets"]["cement"]["truth"] = "nowhere/truth.tif"
    (run["work"] / "bad.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(run["work"], "bad.yaml", "-n")
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if "datasets.cement.truth" in ln]
    assert len(lines) == 1 and "nowhere/truth.tif" in lines[0], out.stderr[-2000:]


def test_truth_of_another_shape_is_refused_by_tile(run: dict, tmp_path: Path) -> None:
    work = run["work"]
    small = tmp_path / "small_truth.tif"
    tifffile.imwrite(small, np.zeros((8, 128, 128), np.uint8))
    cfg = json.loads(json.dumps(run["cfg"]))
    cfg["results"] = "results_bad"
    cfg["tracking"]["enabled"] = False
    cfg["datasets"] = {"cement": cfg["datasets"]["cement"] | {"truth": str(small)}}
    cfg["datasets"]["cement"].pop("models_from")
    (work / "shape.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(work, "shape.yaml", "results_bad/cement/volume.zarr/.dlpipe_complete")
    assert out.returncode != 0
    log = (work / "logs/cement/tile.log").read_text().strip().splitlines()
    assert re.search(r"\(8, 128, 128\).*\(128, 128, 128\)", log[-1]), log[-3:]
    assert str(small) in log[-1] and SCAN.split("/")[-1] in log[-1]
    assert not (work / "results_bad/cement/volume.zarr").exists()


def _dry(work: Path, *configs: Path) -> subprocess.CompletedProcess:
    return _run(
        work,
        "snakemake",
        "-n",
        "--cores",
        "2",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        *(str(c) for c in configs),
    )


def _jobs(out: subprocess.CompletedProcess) -> dict[str, int]:
    stats = out.stdout[out.stdout.index("Job stats") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def test_shipped_own_scan_config_plans_the_scan_alone(tmp_path: Path) -> None:
    """config/own-scan.yaml over config.yaml: the demo dropped, one model for the scan; its
    paths must exist (relative to the working directory)."""
    shipped = (ROOT / "config.yaml", ROOT / "config/own-scan.yaml")
    out = _dry(tmp_path, *shipped)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "config error: datasets.myscan.volume: path not found: data/myscan.tif"
    )
    (tmp_path / "data").mkdir()
    for name in ("myscan.tif", "myscan_cvat.zip"):
        (tmp_path / "data" / name).write_bytes(b"")
    out = _dry(tmp_path, *shipped)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _jobs(out) == {
        "tile": 1,
        "cvat": 1,
        "place": 1,
        "train": 1,
        "predict": 1,
        "postprocess": 1,
        "evaluate": 1,  # no truth: the annotation score of the held-out annotated slices
        "suggest": 1,  # the slices to correct next
        "all": 1,
        "total": 9,
    }
    assert "results/myscan/models/unet-myscan/card.json" in out.stdout
    assert "results/myscan/suggest/unet-myscan/slices.json" in out.stdout
    assert "results/demo" not in out.stdout


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        (
            {"synth": True, "volume": "scan.tif"},
            "datasets.bad.volume: a synth dataset makes its own volume; leave it out",
        ),
        ({"volume": "scan.tif"}, "datasets.bad: no annotations to train on and no models_from"),
        (
            {"volume": "scan.tif", "models_from": ["nope"]},
            "datasets.bad.models_from: 'nope' is not a dataset that trains models",
        ),
        (
            {"volume": "scan.tif", "annotations": "scan.tif", "tile": {"chunkz": [1, 2, 3]}},
            "datasets.bad: ",
        ),
    ],
)
def test_bad_entries_are_refused_with_one_line(tmp_path: Path, entry: dict, line: str) -> None:
    (tmp_path / "scan.tif").write_bytes(b"")
    cfg = {"datasets": {"demo": {"synth": True}, "bad": entry}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = _dry(tmp_path, tmp_path / "c.yaml")
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"config error: {line}"), last
    if "tile" in entry:
        assert "chunkz" in last
