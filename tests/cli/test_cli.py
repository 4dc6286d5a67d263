"""The console script: --help, --version, usage errors."""

from __future__ import annotations

import subprocess

import pytest

from dlpipe import __version__
from dlpipe.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"dlpipe {__version__}"


def test_help_lists_commands_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("--config", "--log-level", "--version", "synth"):
        assert word in out


def test_subcommand_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    out = capsys.readouterr().out
    assert "ring artefacts" in out and "--seed" in out and "--shape" in out


def test_bad_value_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["synth", "out", "--seed", "abc"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--seed" in err


def test_bad_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--log-level", "loud", "synth", "out"])
    assert exc.value.code == 2
    assert "loud" in capsys.readouterr().err


def test_console_script_runs(cli_env: dict[str, str]) -> None:
    out = subprocess.run(
        ["dlpipe", "--version"], capture_output=True, text=True, env=cli_env, check=True
    )
    assert out.stdout.strip() == f"dlpipe {__version__}"


def test_help_lists_commands_in_pipeline_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out.split("Commands:")[1].split()
    order = ["synth", "tile", "cvat", "import", "train", "predict", "postprocess"]
    order += ["baseline", "evaluate", "summary"]
    assert [w for w in listed if w in order] == order


COMMANDS = "synth tile cvat import/coco import/dsb2018 train predict postprocess baseline"


@pytest.mark.parametrize("command", [*COMMANDS.split(), "evaluate", "summary"])
def test_help_metavars_are_readable(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command.split("/"), "--help"])
    out = capsys.readouterr().out
    assert "<list[" not in out and "<int,int" not in out and "<float,float" not in out
