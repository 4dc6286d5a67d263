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

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("start_cluster.sh")
# The data stages of the demo (synth, tile, cvat): short enough for CI on 2 cores.
TARGETS = ("results/demo/volume.zarr/.dlpipe_complete", "results/demo/cvat.zarr/.dlpipe_complete")


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


def _run(workdir: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
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
        timeout=1200,
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
    cfg["synth"] |= {"shape": [24, 64, 64], "annotated_slices": 2}
    runs = {}
    for name, extra in (
        ("local", ("--cores", "2")),
        ("slurm", ("--workflow-profile", str(ROOT / "workflow/profiles/slurm"))),
    ):
        work = tmp_path / name
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        out = _run(work, cli_env, *TARGETS, *extra)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        runs[name] = work

    logs = sorted((runs["slurm"] / "logs").glob("*.log"))
    assert logs, "no rule logs"
    for log in logs:
        found = re.search(r"SLURM job (\d+)", log.read_text())
        assert found, f"{log.name} does not show a SLURM job id"
        job = subprocess.run(
            ["scontrol", "show", "job", found.group(1)], capture_output=True, text=True
        )
        assert "JobState=COMPLETED" in job.stdout, job.stdout + job.stderr
    local_logs = (runs["local"] / "logs").glob("*.log")
    assert all("SLURM job" not in p.read_text() for p in local_logs)

    # Every data file is byte-identical; the root metadata differs only in provenance
    # (absolute source paths, times), so its statistics and split are compared instead.
    local, slurm = (_digests(runs[n] / "results/demo") for n in ("local", "slurm"))
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
