"""`dlpipe train` through the CLI with a real MLflow SQLite store."""

from __future__ import annotations

import json

import pytest

from dlpipe.cli import main


def test_cli_trains_and_tracks(tiny_store, tmp_path, capsys):
    store = tiny_store()
    results = tmp_path / "results"
    out = tmp_path / "model"
    cfg = json.dumps({"results": str(results), "tracking": {"enabled": True}})
    args = [
        "--config-json",
        cfg,
        "train",
        "--model",
        "unet",
        str(store),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--set",
        "steps_per_epoch=2",
        "--set",
        "batch_size=2",
        "--set",
        "patch_size=[8,8]",
        "--set",
        "workers=0",
        "--set",
        "val_max_patches=4",
        "--set",
        "architecture.depth=2",
        "--set",
        "architecture.base_filters=2",
        "--set",
        'loss={"jaccard2": 1, "focal": 1}',
    ]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0, capsys.readouterr().err
    card = json.loads((out / "card.json").read_text())
    assert card["loss"] == {"jaccard2": 1, "focal": 1}
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dlpipe")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["stage"] == "train" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_mean_jaccard")
    assert sorted(m.step for m in history) == [1, 2]
    assert run.data.metrics["parameters"] == card["parameters"]
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"card.json", "metrics.csv", "plots"} <= arts
    # existing model folder without --overwrite or --resume
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and "model folder exists" in capsys.readouterr().err
