"""MLflow child run of the CLI, a dask.distributed scheduler, the Snakemake rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from dlpipe.cli import main
from dlpipe.prediction import predict_volume

ROOT = Path(__file__).resolve().parents[2]


def test_cli_logs_an_mlflow_child_run(models, volume, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DLPIPE_PARENT_RUN_ID", raising=False)
    results = tmp_path / "results"
    cfg = json.dumps({"results": str(results), "tracking": {"enabled": True}})
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--config-json",
                cfg,
                "predict",
                str(models["2d"]),
                str(volume),
                "--out",
                str(tmp_path / "p.zarr"),
                "--block",
                "4",
                "36",
                "40",
            ]
        )
    assert exc.value.code == 0, capsys.readouterr().err
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    run = next(r for r in runs if r.data.tags.get("stage") == "predict")
    m = run.data.metrics
    assert m["blocks"] == 3 * 2 * 2 and m["blocks_predicted"] == 12
    assert m["voxels"] == 12 * 72 * 80 and m["voxels_per_s"] > 0 and m["peak_rss_mb"] > 0
    assert run.data.params["block"] == "[4, 36, 40]"


def test_distributed_scheduler_gives_the_same_labels(models, volume, tmp_path) -> None:
    from distributed import Client, LocalCluster

    params = {"block": [6, 36, 40]}
    predict_volume(models["2d"], volume, tmp_path / "local.zarr", params, progress=False)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        s = predict_volume(
            models["2d"],
            volume,
            tmp_path / "dist.zarr",
            params,
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert s["complete"] and s["blocks_predicted"] == 2 * 2 * 2
    a = zarr.open_group(tmp_path / "local.zarr", mode="r")["labels/phases/0"][:]
    b = zarr.open_group(tmp_path / "dist.zarr", mode="r")["labels/phases/0"][:]
    assert np.array_equal(a, b)


def test_snakemake_rule_predict(models, volume, tmp_path, cli_env) -> None:
    """The real rule on a results folder holding a model and a tiled demo volume."""
    results = tmp_path / "results"
    shutil.copytree(models["2d"], results / "demo" / "models" / "unet-demo")
    shutil.copytree(volume, results / "demo" / "volume.zarr")
    # The demo's annotations count as placed (the place rule is not what this test runs).
    placed = results / "demo" / "volume.zarr" / "labels" / "annotations" / ".dlpipe_complete"
    placed.parent.mkdir(parents=True)
    placed.write_text("complete\n")
    env = cli_env | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), cli_env.get("PYTHONPATH", "")])
    }
    target = results / "demo" / "unet" / "unet-demo" / "prediction.zarr" / ".dlpipe_complete"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"results: {results}\ntracking: {{enabled: false}}\npredict: {{block: [6, 36, 40]}}\n"
    )
    wf = tmp_path / "wf"
    wf.mkdir()
    for name in ("Snakefile", "config.yaml", "workflow", "envs", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, wf / name)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            str(target),
            "--cores",
            "1",
            "--allowed-rules",
            "predict",
            "--configfile",
            str(cfg),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=wf,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert target.is_file()
    lab = zarr.open_group(target.parent, mode="r")["labels/phases/0"]
    assert lab.shape == (12, 72, 80) and lab.chunks == (6, 36, 40)
