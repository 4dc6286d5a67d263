"""Fixtures of the robustness tests: ``dlpipe`` as a subprocess, a small tiled volume."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _robust import UNTRACKED, phantom  # noqa: E402


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``dlpipe`` subprocess (this venv's console script, no tracking)."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.pop("MLFLOW_TRACKING_URI", None)
    e.pop("DLPIPE_PARENT_RUN_ID", None)
    return e


@pytest.fixture()
def dlpipe(env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``dlpipe(*args, config=UNTRACKED, env=None, **kw)``: run the CLI, capture its output."""

    def run(
        *args: object,
        config: str | None = UNTRACKED,
        extra_env: dict[str, str] | None = None,
        **kw: object,
    ) -> subprocess.CompletedProcess:
        cmd = ["dlpipe", "--log-level", "warning"]
        if config is not None:
            cmd += ["--config-json", config]
        return subprocess.run(
            [*cmd, *map(str, args)],
            env=env | (extra_env or {}),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
            **kw,  # type: ignore[arg-type]
        )

    return run


@pytest.fixture()
def tiled(tmp_path: Path, dlpipe) -> Path:
    """``vol.zarr``: a 24×64×64 phantom with labels, tiled by ``dlpipe tile``."""
    image, labels = phantom((24, 64, 64), seed=3)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "labels.npy", labels)
    proc = dlpipe("tile", "image.npy", "--labels", "labels.npy", "--out", "vol.zarr")
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "vol.zarr"
