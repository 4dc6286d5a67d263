"""The Snakemake rule `cvat`, run for real on a small demo (synth -> cvat)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import zarr

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_snakemake_cvat_rule(tmp_path: Path, cli_env: dict[str, str]) -> None:
    if shutil.which("snakemake", path=cli_env["PATH"]) is None:
        pytest.skip("snakemake not installed")
    results = tmp_path / "results"
    target = results / "demo/cvat.zarr/.dlpipe_complete"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"results: {results}\n"
        "tracking: {enabled: false}\n"
        "synth: {seed: 3, shape: [16, 48, 48], annotated_slices: 2}\n"
    )
    cmd = [
        "snakemake",
        "--cores",
        "1",
        "--directory",
        str(ROOT),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--configfile",
        str(cfg),
        "--",
        str(target),
    ]
    env = dict(cli_env)
    env["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert target.is_file()
    g = zarr.open_group(str(results / "demo/cvat.zarr"), mode="r")
    assert g.attrs["classes"] == ["background", "fibre", "pore"]
    assert g["semantic"].shape == (2, 48, 48) and g["images"].shape == (2, 48, 48)
    assert (results / "demo/cvat.zarr/objects.parquet").is_file()
