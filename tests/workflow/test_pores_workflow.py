"""workflow/rules/instances.smk, the pores: `snakemake pores` on a tiny demo runs synth's
truth pore instances -> tile --instances -> instance-unet train / predict -> evaluate
--instances (and the Otsu + components floor) -> summary/pores.csv. Off by default."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "results": "results",
    "tracking": {"enabled": False},
    "synth": {"shape": [16, 64, 64], "annotated_slices": 5, "pore_fraction": 0.02},
    "tile": {"chunks": [8, 32, 32], "levels": 1},
    "train": {
        "batch_size": 2,
        "patch_size": [32, 32],
        "workers": 0,
        "val_max_patches": 4,
        "architecture": {"base_filters": 4, "depth": 2},
        "torch_threads": 1,
        # a 3-step model finds objects only at the grid's thresholds: keep them whatever
        # the (tiny) validation set, as before the tuning guard
        "instance_unet": {"tune_min_objects": 1, "tune_min_gain": 0},
    },
    "predict": {"torch_threads": 1},
    "instances": {"pores": {"epochs": 1, "steps_per_epoch": 3}},
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DLPIPE_PARENT_RUN_ID", None)
    return env


def _smk(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        "snakemake",
        *args,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "c.yaml"),
    ]
    return subprocess.run(
        cmd, cwd=work, env=_env(), capture_output=True, text=True, timeout=900, check=False
    )


def test_pores_target_scores_instance_unet_and_the_floor(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    off = _smk(tmp_path, "-n", "--cores", "2")
    assert off.returncode == 0, off.stderr
    assert "train_instance_unet" not in off.stdout  # off by default
    run = _smk(tmp_path, "pores", "--cores", "2")
    logs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    assert run.returncode == 0, run.stderr[-3000:] + logs[-3000:]
    d = tmp_path / "results" / "demo"
    rows = list(csv.DictReader((d / "summary" / "pores.csv").open()))
    assert [r["method"] for r in rows] == ["instance-unet", "otsu-cc"]
    for r in rows:
        for k in ("f1", "pq", "count_error_signed", "size_w1", "n_true"):
            assert r[k] != "", (r["method"], k)
    assert "PQ" not in rows[0]  # lower-case keys
    m = json.loads((d / "pores" / "instance-unet" / "metrics.json").read_text())
    floor = json.loads((d / "pores" / "otsu-cc" / "metrics.json").read_text())
    assert m["mode"] == floor["mode"] == "volume" and m["z_ranges"] == floor["z_ranges"]
    assert m["classes"] == ["pore"] and m["overall"]["n_true"] == floor["overall"]["n_true"] > 0
    assert "Pores as instances" in (d / "summary" / "pores.html").read_text()
