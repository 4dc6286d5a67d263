"""workflow/rules/instances.smk: in the default target only with instances.enabled; the
`instances` target plans the three rules whatever the switch says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ("train_maskrcnn", "predict_instances", "evaluate_instances")


def _dry_run(tmp_path: Path, env: dict[str, str], enabled: bool, *targets: str) -> str:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["instances"] = {"enabled": enabled}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "-n",
            "-p",
            *targets,
            "--cores",
            "2",
            "--configfile",
            "c.yaml",
            "--directory",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_flag_on_plans_the_three_rules(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = _dry_run(tmp_path, cli_env, True)
    stats = out[out.index("Job stats") :]
    for rule in RULES:
        assert re.search(rf"^{rule}\s+1$", stats, re.M), f"{rule} not planned"
    assert "train --model maskrcnn results/demo/cvat.zarr --out results/demo/models/maskrcnn" in out
    assert "evaluate --instances results/demo/instances/maskrcnn/prediction.zarr" in out


def test_flag_off_plans_nothing(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = _dry_run(tmp_path, cli_env, False)
    for rule in RULES:
        assert rule not in out


def test_pores_rules_are_planned_by_the_pores_target(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    out = _dry_run(tmp_path, cli_env, False, "pores")
    stats = out[out.index("Job stats") :]
    for rule in ("tile_pores", "train_instance_unet", "predict_instance_unet", "pores_summary"):
        assert re.search(rf"^{rule}\s+1$", stats, re.M), f"{rule} not planned"
    assert re.search(r"^evaluate_pores\s+2$", stats, re.M)
    assert "--components pore" in out and "train --model instance-unet" in out


def test_instances_target_ignores_the_switch(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = _dry_run(tmp_path, cli_env, False, "instances")
    stats = out[out.index("Job stats") :]
    for rule in RULES:
        assert re.search(rf"^{rule}\s+1$", stats, re.M), f"{rule} not planned"
