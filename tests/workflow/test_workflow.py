"""The Snakemake workflow: dry run, lint, a real run of what exists, and nothing to do after."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _snakemake(
    args: list[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_dry_run_on_shipped_config(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """From nothing, the shipped config plans every stage that exists."""
    out = _snakemake(
        [
            "-n",
            "--cores",
            "8",
            "--configfile",
            str(ROOT / "config.yaml"),
            "--directory",
            str(tmp_path),
        ],
        cli_env,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    stats = out.stdout[out.stdout.index("Job stats") :]
    for rule in (
        "synth",
        "tile",
        "cvat",
        "place",
        "train",
        "predict",
        "baseline",
        "postprocess",
        "evaluate",
        "summary",
        "suggest",
    ):
        assert re.search(rf"^{rule}\s+\d+$", stats, re.M), f"{rule} not planned"
    # The shipped sweep: one model per number of annotated slices (the learning curve).
    assert re.search(r"^train\s+3$", stats, re.M)
    assert re.search(r"^evaluate\s+5$", stats, re.M)  # 3 U-Nets + 2 baselines
    for n in (2, 4, 8):
        assert f"results/demo/models/f16-d4-ce+dice-2d-s{n}/card.json" in out.stdout
    assert "results/demo/suggest/f16-d4-ce+dice-2d-s8/slices.json" in out.stdout


def test_lint_is_clean(cli_env: dict[str, str]) -> None:
    out = _snakemake(["--lint"], cli_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "good condition" in out.stdout + out.stderr


def test_bad_config_is_refused_by_snakemake(tmp_path: Path, cli_env: dict[str, str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("synth: {seeed: 1}\n")
    out = _snakemake(["-n", "--cores", "1", "--configfile", str(cfg)], cli_env, tmp_path)
    assert out.returncode != 0
    assert "seeed" in out.stdout + out.stderr


def test_real_run_then_nothing_to_do(tmp_path: Path, cli_env: dict[str, str]) -> None:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["synth"]["shape"] = [24, 64, 64]
    cfg["synth"]["annotated_slices"] = 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/demo/metadata.json"  # the synth stage alone (the chain is tested elsewhere)
    args = [target, "--cores", "2", "--configfile", "config.yaml", "--directory", str(tmp_path)]
    first = _snakemake(args, cli_env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "results/demo/volume.tif").is_file()
    assert (tmp_path / "logs/demo/synth.log").is_file()
    bench = (tmp_path / "logs/benchmarks/demo/synth.tsv").read_text().splitlines()
    assert bench[0].startswith("s\th:m:s") and len(bench) == 2
    second = _snakemake(args, cli_env, tmp_path)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr
    # A training-free parameter change re-runs synth (params are tracked).
    cfg["synth"]["seed"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    dry = _snakemake([*args, "-n"], cli_env, tmp_path)
    assert "synth" in dry.stdout and "params" in (dry.stdout + dry.stderr).lower()
    # The workflow opened one parent run with a finished child.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'results/mlflow.db'}")
    exp = client.get_experiment_by_name("dlpipe-demo")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "workflow"]
    children = [r for r in runs if r.data.tags.get("stage") == "synth"]
    assert len(parents) >= 1 and len(children) == 1
    assert children[0].data.tags["mlflow.parentRunId"] == parents[-1].info.run_id
