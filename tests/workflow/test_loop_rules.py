"""The loop's rules on a scan without a truth (a dry run: what Snakemake would run): the U-Net
trains from the annotations placed in the scan, its score is the annotation score, and
`dlpipe slices --suggest` writes the slices to correct next."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def dry_run(tmp_path: Path, cli_env: dict[str, str], extra: dict) -> subprocess.CompletedProcess:
    (tmp_path / "data").mkdir()
    (tmp_path / "data/scan.tif").write_bytes(b"")  # a dry run only checks that paths exist
    (tmp_path / "data/export.zip").write_bytes(b"")
    cfg = {
        "datasets": {
            "demo": None,
            "scan": {"volume": "data/scan.tif", "annotations": "data/export.zip"},
        },
        "sweep": {"annotated_slices": [2, 4]},
        **extra,
    }
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(cfg))
    cmd = ["snakemake", "-n", "-p", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2"]
    config = [str(ROOT / "config.yaml"), "own.yaml"]
    return subprocess.run(
        [*cmd, "--directory", str(tmp_path), "--configfile", *config],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_scan_without_truth_trains_on_placed_slices_scores_and_suggests(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    out = dry_run(tmp_path, cli_env, {"suggest": {"count": 3, "axes": ["z", "y"]}})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    train = [ln for ln in lines if " train --model unet " in ln]
    assert len(train) == 2 and all("results/scan/volume.zarr" in ln for ln in train)
    assert all("--set 'labels=\"annotations\"'" in ln for ln in train)
    assert any("--set max_images=2" in ln for ln in train)
    evaluate = [ln for ln in lines if " evaluate " in ln and "dlpipe" in ln]
    assert len(evaluate) == 2 and all(
        "results/scan/volume.zarr --annotations" in ln for ln in evaluate
    )
    assert not any("baseline" in ln for ln in lines if ln.startswith("dlpipe"))
    model = "f16-d4-ce+dice-2d-s4"  # the dataset's last U-Net (the most slices)
    (suggest,) = [ln for ln in lines if " slices results/scan/volume.zarr" in ln]
    assert f"--suggest results/scan/unet/{model}/prediction.zarr --count 3" in suggest
    assert "--axis z --axis y --min-gap 4" in suggest
    assert f"--labels results/scan/unet/{model}/clean.zarr" in suggest
    assert f"--out results/scan/suggest/{model} " in suggest


def test_no_suggest_job_with_count_0_and_an_unknown_model_is_refused(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    out = dry_run(tmp_path, cli_env, {"suggest": {"count": 0}})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rule suggest" not in out.stdout
    (tmp_path / "data/scan.tif").unlink()
    (tmp_path / "data/export.zip").unlink()
    (tmp_path / "data").rmdir()
    out = dry_run(tmp_path, cli_env, {"suggest": {"model": "nope"}})
    assert out.returncode != 0
    assert "suggest.model: 'nope' is not a U-Net of dataset 'scan'" in out.stderr
