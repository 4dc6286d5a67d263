"""Helpers for the annotation tests: run the CLI in-process, paths of the real CVAT files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

NO_TRACKING = json.dumps({"tracking": {"enabled": False}})


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """Run ``dlpipe --config-json ... ARGS`` in-process; return (exit code, stderr)."""
    from dlpipe.cli import main

    def run(*args: str, config_json: str = NO_TRACKING) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exc:
            main(["--config-json", config_json, *[str(a) for a in args]])
        return int(exc.value.code or 0), capsys.readouterr().err

    return run


@pytest.fixture(scope="session")
def cvat_data(shared_data: Path) -> Path:
    path = shared_data / "cvat"
    if not path.is_dir():
        pytest.skip("no ../shared/data/cvat")
    return path
