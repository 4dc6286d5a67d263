"""The demo workflow on a real single-node SLURM cluster, through the shipped SLURM profile.

The cluster (Debian's slurm-wlm and munge) is installed and started by
``start_cluster.sh``, which needs root. The test runs in CI (``CI`` set) or when
``DLPIPE_TEST_SLURM=1``; elsewhere it skips rather than install system packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("start_cluster.sh")
MODEL = "f4-d2-ce-2d-s3"
# The whole demo chain (synth, tile, cvat, place, train, predict, postprocess, evaluate, the
# baselines, summary) on a short configuration: one small U-Net, a few training steps, short
# enough for CI on 2 cores. Every output is under results/demo/ (the one dataset).
TARGETS = ("results/demo/summary/models.csv",)
SEGMENTATIONS = (f"unet_{MODEL}", "baselines_otsu", "baselines_rf")
# Each run takes 2-4 minutes on 2 cores; a stuck queue fails well inside CI's 30 minutes.
TIMEOUT = 600
SHORT = {
    "synth": {"shape": [24, 64, 64], "annotated_slices": 5},
    "train": {
        "epochs": 2,
        "steps_per_epoch": 4,
        "batch_size": 2,
        "patch_size": [32, 32],
        "workers": 0,
        "val_max_patches": 4,
    },
    "sweep": {"base_filters": [4], "depth": [2], "loss": ["ce"], "annotated_slices": [3]},
    "predict": {"block": [8, 64, 64]},
    "evaluation": {"overlays": 1},
}


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    if not (os.environ.get("CI") or os.environ.get("DLPIPE_TEST_SLURM") == "1"):
        pytest.skip("SLURM test runs in CI or with DLPIPE_TEST_SLURM=1 (it installs slurm-wlm)")
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("neither SLURM nor apt-get is available")
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    # A node smaller than what the profile asks for leaves jobs pending forever: say so now.
    node = subprocess.run(["scontrol", "show", "node"], capture_output=True, text=True).stdout
    cpus = int(re.search(r"CPUTot=(\d+)", node).group(1))
    memory = int(re.search(r"RealMemory=(\d+)", node).group(1))
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    wanted_cpus = profile["default-resources"]["cpus_per_task"]
    wanted_mem = max(r.get("mem_mb", 0) for r in profile["set-resources"].values())
    assert cpus >= wanted_cpus and memory >= wanted_mem, (
        f"the SLURM node has {cpus} CPUs and {memory} MB; the profile asks for "
        f"{wanted_cpus} CPUs and up to {wanted_mem} MB\n{node}"
    )


def _slurm_state() -> str:
    """What SLURM says about its queue and node, for a failure message."""
    parts = []
    for cmd in (["squeue", "-o", "%i %j %T %r %C %m"], ["sinfo", "-N", "-l"]):
        got = subprocess.run(cmd, capture_output=True, text=True, check=False)
        parts.append(f"$ {' '.join(cmd)}\n{got.stdout}{got.stderr}")
    return "\n".join(parts)


def _run(workdir: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    try:
        return _snakemake(workdir, env, *extra)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-3000:]
        text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        pytest.fail(f"snakemake ran past {TIMEOUT} s in {workdir}\n{text}\n{_slurm_state()}")


def _snakemake(workdir: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--configfile",
            "config.yaml",
            "--directory",
            str(workdir),
            *extra,
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_demo_workflow_runs_under_slurm(
    slurm_cluster: None, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    for key, value in SHORT.items():
        cfg[key] = cfg.get(key, {}) | value
    runs = {}
    for name, extra in (
        ("local", ("--cores", "2")),
        # The first status check after 2 s instead of the profile's 40 (short jobs).
        # The test cluster has no GPU: train asks for none here.
        (
            "slurm",
            (
                "--workflow-profile",
                str(ROOT / "workflow/profiles/slurm"),
                "--slurm-init-seconds-before-status-checks",
                "2",
                "--set-resources",
                "train:gpu=0",
            ),
        ),
    ):
        work = tmp_path / name
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        out = _run(work, cli_env, *TARGETS, *extra)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + _slurm_state()
        runs[name] = work

    logs = sorted((runs["slurm"] / "logs" / "demo").glob("*.log"))
    assert {p.stem for p in logs} == {
        "synth",
        "tile",
        "place",  # training reads the annotations placed in the scan: no cvat.zarr job
        f"train_{MODEL}",
        f"predict_{MODEL}",
        "baseline_otsu",
        "baseline_rf",
        *(f"postprocess_{s}" for s in SEGMENTATIONS),
        *(f"evaluate_{s}" for s in SEGMENTATIONS),
        "summary",
    }
    for log in logs:
        found = re.search(r"SLURM job (\d+)", log.read_text())
        assert found, f"{log.name} does not show a SLURM job id"
        job = subprocess.run(
            ["scontrol", "show", "job", found.group(1)], capture_output=True, text=True
        )
        assert "JobState=COMPLETED" in job.stdout, job.stdout + job.stderr
    local_logs = (runs["local"] / "logs" / "demo").glob("*.log")
    assert all("SLURM job" not in p.read_text() for p in local_logs)

    # Every data file is byte-identical; the root metadata differs only in provenance
    # (absolute source paths, times), so its statistics and split are compared instead. The
    # models and segmentations (beside the data in results/demo/) are compared below.
    later = ("models/", "unet/", "baselines/", "summary/")
    local, slurm = (
        {k: v for k, v in _digests(runs[n] / "results/demo").items() if not k.startswith(later)}
        for n in ("local", "slurm")
    )
    volatile = {"volume.zarr/.dlpipe_complete", "volume.zarr/zarr.json"}
    assert {k: v for k, v in local.items() if k not in volatile} == {
        k: v for k, v in slurm.items() if k not in volatile
    }
    attrs = [
        json.loads((runs[n] / "results/demo/volume.zarr/zarr.json").read_text())["attributes"]
        for n in ("local", "slurm")
    ]
    for key in ("statistics", "split"):
        assert attrs[0]["dlpipe"][key] == attrs[1]["dlpipe"][key]

    # Training on CPU with the same seed and thread count is deterministic
    # (torch.use_deterministic_algorithms, seeded sampling): the weights are bit-identical,
    # hence so are the predicted and cleaned labels and the scores.
    import torch
    import zarr

    res = {n: runs[n] / "results" / "demo" for n in runs}
    weights = [
        torch.load(res[n] / "models" / MODEL / "weights.pt", weights_only=True)
        for n in ("local", "slurm")
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    for store in ("prediction.zarr", "clean.zarr"):
        a, b = (
            zarr.open_group(res[n] / "unet" / MODEL / store, mode="r")["labels/phases/0"][:]
            for n in ("local", "slurm")
        )
        assert np.array_equal(a, b), store
    for table in ("clean.blobs.csv", "clean_metrics.csv"):
        assert (res["local"] / "unet" / MODEL / table).read_bytes() == (
            res["slurm"] / "unet" / MODEL / table
        ).read_bytes(), table
    scores = [
        json.loads((res[n] / "unet" / MODEL / "clean_metrics.json").read_text())
        for n in ("local", "slurm")
    ]
    assert scores[0]["per_class"] == scores[1]["per_class"]
    # One MLflow parent per invocation: every SLURM job's run is a child of the same one.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{runs['slurm'] / 'results' / 'mlflow.db'}")
    runs_ = client.search_runs([client.get_experiment_by_name("dlpipe-demo").experiment_id])
    parents = {r.info.run_id for r in runs_ if r.data.tags.get("stage") == "workflow"}
    children = [r for r in runs_ if r.data.tags.get("stage") != "workflow"]
    # synth, tile, place, train, predict, 2 baselines, 3 postprocess, 3 evaluate, summary
    assert len(parents) == 1 and len(children) == 14
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == parents
