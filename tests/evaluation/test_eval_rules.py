"""A real Snakemake run of baseline -> postprocess -> evaluate on a small tiled demo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import tifffile
import yaml
import zarr

ROOT = Path(__file__).resolve().parents[2]


def test_baseline_postprocess_evaluate_rules(tmp_path: Path, cli_env: dict[str, str]) -> None:
    from dlpipe.config import defaults
    from dlpipe.synth import make_demo

    params = defaults()["synth"] | {"shape": [24, 48, 48], "annotated_slices": 3}
    demo = tmp_path / "results" / "demo"
    make_demo(demo, params)
    # stand-in for `dlpipe tile`: the OME-Zarr layout of the brief
    root = zarr.open_group(str(demo / "volume.zarr"), mode="w")
    root.attrs["dlpipe"] = {
        "split": {"train": [0, 16], "val": [16, 18], "test": [19, 24], "gap": 1},
        "complete": True,
    }
    img = root.create_array("0", shape=(24, 48, 48), chunks=(8, 48, 48), dtype="uint8")
    img[:] = tifffile.imread(demo / "volume.tif")
    lab = root.create_array(
        "labels/phases/0", shape=(24, 48, 48), chunks=(8, 48, 48), dtype="uint8"
    )
    lab[:] = tifffile.imread(demo / "labels.tif")
    (demo / "volume.zarr" / ".dlpipe_complete").write_text("complete\n")
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["postprocess"] = {"rules": [{"phase": 2, "min_size": 4}]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--cores",
            "1",
            "--configfile",
            "config.yaml",
            "--directory",
            str(tmp_path),
            "results/baselines/otsu/clean_metrics.json",
        ],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    base = tmp_path / "results/baselines/otsu"
    first = json.loads((base / "metrics.json").read_text())
    clean = json.loads((base / "clean_metrics.json").read_text())
    assert first["z_ranges"] == [[19, 24]] and first["z_source"] == "split"
    assert clean["z_ranges"] == [[19, 24]] and 0 < clean["mean_jaccard"] <= 1
    assert (base / "clean.blobs.csv").read_text().startswith("id,phase,voxels")
    assert (tmp_path / "benchmarks/out/evaluate_otsu.tsv").is_file()
