"""A real Snakemake run: synth -> tile -> baseline -> postprocess -> evaluate, MLflow children."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_baseline_postprocess_evaluate_rules(tmp_path: Path, cli_env: dict[str, str]) -> None:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["synth"]["shape"] = [24, 48, 48]
    cfg["synth"]["annotated_slices"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--cores",
            "2",
            "--configfile",
            "config.yaml",
            "--directory",
            str(tmp_path),
            "results/demo/baselines/otsu/clean_metrics.json",
        ],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    base = tmp_path / "results/demo/baselines/otsu"
    split = json.loads((base / "metrics.json").read_text())
    clean = json.loads((base / "clean_metrics.json").read_text())
    # both scored on the test split that `dlpipe tile` wrote into the OME-Zarr attributes
    assert split["z_source"] == "split" and clean["z_source"] == "split"
    assert split["z_ranges"] == clean["z_ranges"] and split["z_ranges"][0][1] == 24
    assert 0 < clean["mean_jaccard"] <= 1
    assert (base / "clean.blobs.csv").read_text().startswith("id,phase,voxels")
    assert (base / "clean.zarr/.dlpipe_complete").is_file()
    assert (tmp_path / "logs/benchmarks/demo/evaluate_baselines_otsu.tsv").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'results/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dlpipe-demo").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("stage") == "workflow").info.run_id
    stages = {r.data.tags.get("stage"): r for r in runs}
    for stage in ("baseline", "postprocess", "evaluate"):
        assert stages[stage].data.tags["mlflow.parentRunId"] == parent
    assert "mean_jaccard" in stages["evaluate"].data.metrics
