"""The memory budget: total peak RSS of the process, refused when below what it needs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlpipe.cli import main
from dlpipe.errors import UserError
from dlpipe.prediction.memory import RUN_OVERHEAD_MB, rss_mb, workers_in_budget

ROOT = Path(__file__).resolve().parents[2]


def test_workers_fit_the_budget_above_what_the_process_holds() -> None:
    est = 100 * 2**20  # 100 MiB per block
    base = rss_mb() + RUN_OVERHEAD_MB  # what this process holds + the run's overhead
    assert workers_in_budget(base + 150, est, 4) == 1
    assert workers_in_budget(base + 260, est, 4) == 2
    assert workers_in_budget(base + 10_000, est, 4) == 4  # never more than asked
    with pytest.raises(UserError, match=r"below the ~\d+ MiB the process needs"):
        workers_in_budget(base + 50, est, 4)


def test_budget_below_the_process_baseline_is_refused(models, volume, tmp_path, capsys) -> None:
    cfg = json.dumps({"tracking": {"enabled": False}, "predict": {"memory_budget_mb": 300}})
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--config-json",
                cfg,
                "predict",
                str(models["2d"]),
                str(volume),
                "--out",
                str(tmp_path / "p.zarr"),
            ]
        )
    err = capsys.readouterr().err
    assert exc.value.code == 2
    m = re.search(
        r"memory_budget_mb 300 MiB is below the ~(\d+) MiB the process needs "
        r"\((\d+) MiB in use by Python, torch(?:, MLflow)? and the model",
        err,
    )
    assert m, err
    assert int(m.group(1)) > int(m.group(2)) > 300  # torch alone is far above 300 MiB
    assert "total peak RSS" in err and len(err.strip().splitlines()) == 1


def test_total_peak_rss_stays_under_the_budget(models, volume, tmp_path, cli_env) -> None:
    """A fresh `dlpipe predict` process (imports included) with a budget of 800 MiB."""
    env = cli_env | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), cli_env.get("PYTHONPATH", "")])
    }
    cfg = json.dumps(
        {
            "tracking": {"enabled": False},
            "predict": {"memory_budget_mb": 800, "device": "cpu", "threads": 2},
        }
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlpipe",
            "--config-json",
            cfg,
            "predict",
            str(models["2d"]),
            str(volume),
            "--out",
            str(tmp_path / "p.zarr"),
            "--block",
            "4",
            "36",
            "40",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    peak = float(re.search(r"peak RSS (\d+) MiB", r.stdout).group(1))
    assert 300 < peak < 800, r.stdout
    assert "passed predict.memory_budget_mb" not in r.stderr
