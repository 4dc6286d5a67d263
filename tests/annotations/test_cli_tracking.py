"""`dlpipe cvat` end to end: the CLI, the MLflow child run (real SQLite store)."""

from __future__ import annotations

import json
from pathlib import Path

import zarr


def test_cli_logs_child_run(cvat_data: Path, tmp_path: Path, run_cli, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = tmp_path / "results"
    cfg = json.dumps(
        {"results": str(results), "tracking": {"enabled": True, "experiment": "cvat-test"}}
    )
    monkeypatch.setenv("DLPIPE_PARENT_RUN_ID", "")
    xml = cvat_data / "cvat_docs/cvat_images_1.1_doc_example.xml"
    code, err = run_cli("cvat", xml, "--no-images", "--out", tmp_path / "d.zarr", config_json=cfg)
    assert code == 0, err
    assert zarr.open_group(str(tmp_path / "d.zarr"), mode="r")["semantic"].shape == (1, 1200, 1600)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cvat-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["stage"] == "cvat" and run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["images"] == 1 and m["objects_car"] == 2 and m["objects_plate"] == 1
    assert m["ignored_polyline"] == 2 and m["counted_skeleton"] == 1 and m["clipped"] == 0
    assert m["seconds"] > 0
    assert run.data.params["read_images"] == "False"
