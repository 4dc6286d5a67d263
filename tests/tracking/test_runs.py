"""MLflow tracking against a real SQLite store: parent/child runs, switch, 8 concurrent writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from dlpipe.results import StageResult
from dlpipe.tracking import (
    PARENT_ENV,
    end_parent_run,
    init_store,
    stage_run,
    start_parent_run,
    tracking_uri,
)

N_WRITERS = 8
N_STEPS = 15


def test_default_uri_is_sqlite_in_results(config: dict[str, Any], monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(config) == f"sqlite:///{Path(config['results']).resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(config) == "http://mlflow.example:5000"


def test_disabled_tracking_writes_nothing(config: dict[str, Any], monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config["tracking"]["enabled"] = False
    with stage_run(config, "synth", params={"a": 1}) as run:
        run.log_metrics({"x": 1.0})
        assert not run.active
    assert init_store(config) is None
    assert not Path(config["results"]).exists()


def test_failed_stage_is_marked_failed(config: dict[str, Any], monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    with pytest.raises(RuntimeError), stage_run(config, "tile") as run:
        raise RuntimeError("boom")
    client = MlflowClient(tracking_uri(config))
    assert client.get_run(run.run_id).info.status == "FAILED"


WRITER = """
import json, sys
from dlpipe.tracking import stage_run

config, i, steps = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with stage_run(config, f"stage{i}", dataset="demo", model="unet", params={"i": i}) as run:
    for step in range(steps):
        run.log_metrics({"loss": 1.0 / (step + 1), "writer": float(i)}, step=step)
    run.set_tags({"done": "yes"})
print(run.run_id)
"""


def test_eight_concurrent_writers_lose_nothing(
    config: dict[str, Any], monkeypatch, tmp_path: Path
) -> None:
    """Eight separate processes (like parallel Snakemake jobs) log into one SQLite store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exp_id = init_store(config)  # once, before the parallel jobs
    parent = start_parent_run(config, "workflow")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env[PARENT_ENV] = parent
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), json.dumps(config), str(i), str(N_STEPS)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(N_WRITERS)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    run_ids = [out.strip().splitlines()[-1] for out, _ in results]
    end_parent_run(config, parent)

    client = MlflowClient(tracking_uri(config))
    assert len(set(run_ids)) == N_WRITERS
    children = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_id for r in children) == sorted(run_ids)
    for r in children:
        assert r.info.status == "FINISHED"
        assert r.data.tags["done"] == "yes" and r.data.tags["model"] == "unet"
        assert "git_commit" in r.data.tags and "config_hash" in r.data.tags
        history = client.get_metric_history(r.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(N_STEPS))
        assert r.data.metrics["writer"] == float(r.data.params["i"])
    assert client.get_run(parent).info.status == "FINISHED"


def test_artifacts_land_in_results(config: dict[str, Any], monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    model = tmp_path / "model"
    model.mkdir()
    (model / "card.json").write_text("{}")
    (model / "weights.pt").write_bytes(b"\0" * 10)
    with stage_run(config, "train", model="unet") as run:
        run.log_artifacts(model, "model")
        run.log_dict({"a": 1}, "summary.json")
    client = MlflowClient(tracking_uri(config))
    names = sorted(a.path for a in client.list_artifacts(run.run_id, "model"))
    assert names == ["model/card.json", "model/weights.pt"]
    stored = Path(config["results"]) / "mlartifacts"
    assert (stored.rglob("weights.pt")).__next__().stat().st_size == 10


def test_log_result_logs_what_the_stage_returns(
    config: dict[str, Any], monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    table = tmp_path / "table.csv"
    table.write_text("a\n1\n")
    plot = tmp_path / "bars.png"
    plot.write_bytes(b"png")
    result = StageResult(
        {"images": 3},
        metrics={"images": 3, "per": {"x": 0.5}},
        params={"model_dir": "m"},
        tags={"shape": "1x2x3"},
        artifacts=[table, (plot, "plots")],
        dicts={"summary.json": {"images": 3}},
        summary="3 images",
    )
    assert result == {"images": 3} and json.loads(json.dumps(result)) == {"images": 3}
    with stage_run(config, "tile", params={"seed": 1}) as run:
        run.log_result(result)
    client = MlflowClient(tracking_uri(config))
    data = client.get_run(run.run_id).data
    assert data.metrics == {"images": 3.0, "per.x": 0.5}
    assert data.params == {"seed": "1", "model_dir": "m"}
    assert data.tags["shape"] == "1x2x3" and data.tags["stage"] == "tile"
    names = {a.path for a in client.list_artifacts(run.run_id)}
    assert names == {"table.csv", "plots", "summary.json"}
    assert [a.path for a in client.list_artifacts(run.run_id, "plots")] == ["plots/bars.png"]
