"""Helpers for the volumes tests: run `dlpipe tile` in-process without tracking."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dlpipe.cli import main

NO_TRACKING = '{"tracking": {"enabled": false}}'


@pytest.fixture()
def run_tile(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """``run_tile(*args)`` -> (exit code, stderr) of ``dlpipe tile ARGS``."""

    def run(*args: str | Path) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exc:
            main(["--log-level", "warning", "--config-json", NO_TRACKING, "tile", *map(str, args)])
        return int(exc.value.code or 0), capsys.readouterr().err.strip()

    return run
