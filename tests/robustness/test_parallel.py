"""Issue 17 item 3: eight `dlpipe evaluate` at once on a fresh MLflow SQLite store, then
eight on the existing store: every run recorded, no command fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import tifffile
from _robust import UNTRACKED

N = 8


def _launch(tmp_path: Path, env: dict[str, str], uri: str, tag: str) -> list:
    return [
        subprocess.Popen(
            ["dlpipe", "--log-level", "warning", "evaluate", "A.tif", "B.tif", "--all",
             "--out", f"{tag}{i}.json"],
            cwd=tmp_path,
            env=env | {"MLFLOW_TRACKING_URI": uri},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(N)
    ]  # fmt: skip


def _wait(procs: list) -> list[tuple[int, str]]:
    return [(p.wait(timeout=600), p.communicate()[1]) for p in procs]


def test_eight_processes_on_a_fresh_and_an_existing_store(tmp_path: Path, env) -> None:
    assert UNTRACKED  # (the other tests run untracked; this one tracks)
    a = np.zeros((4, 16, 16), np.uint8)
    a[:, 4:8] = 1
    tifffile.imwrite(tmp_path / "A.tif", a, photometric="minisblack")
    tifffile.imwrite(tmp_path / "B.tif", a, photometric="minisblack")
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert not db.exists()
    fresh = _wait(_launch(tmp_path, env, uri, "fresh"))
    assert [code for code, _ in fresh] == [0] * N, [err for _, err in fresh]
    existing = _wait(_launch(tmp_path, env, uri, "again"))
    assert [code for code, _ in existing] == [0] * N, [err for _, err in existing]
    assert (db.parent / "mlflow.db.lock").is_file()

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("dlpipe")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(runs) == 2 * N  # 0 lost
    assert {r.info.status for r in runs} == {"FINISHED"}  # 0 errors
    assert {r.data.tags["stage"] for r in runs} == {"evaluate"}
    assert all(r.data.metrics["mean_jaccard"] == 1.0 for r in runs)  # A against itself
