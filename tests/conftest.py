"""Shared fixtures: the real data in ../shared/data, a default config, a demo data set."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DLPIPE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (a clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture()
def config(tmp_path: Path) -> dict[str, Any]:
    """The schema defaults with results in a temporary folder."""
    from dlpipe.config import defaults

    cfg = defaults()
    cfg["results"] = str(tmp_path / "results")
    return cfg


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default demo data set (``dlpipe synth`` defaults), made once per session."""
    from dlpipe.config import defaults
    from dlpipe.synth import make_demo

    out = tmp_path_factory.mktemp("demo") / "demo"
    make_demo(out, defaults()["synth"])
    return out


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running ``dlpipe`` / ``snakemake`` subprocesses from the venv."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DLPIPE_PARENT_RUN_ID", None)
    return env
