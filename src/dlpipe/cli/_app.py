"""The Typer application and the options every subcommand shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dlpipe import __version__
from dlpipe._logging import LEVELS, setup_logging

app = typer.Typer(
    name="dlpipe",
    help=(
        "Deep-learning segmentation of microscopy and X-ray tomography volumes.\n\n"
        "Each subcommand runs one stage of the pipeline; `snakemake --cores 8` chains "
        "them. Options given on the command line override the --config file, whose "
        "keys and defaults are documented in workflow/schemas/config.schema.yaml."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

state: dict[str, Any] = {"config_path": None, "config_json": None, "log_level": "info"}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML configuration (see config.yaml); unset keys take the schema's defaults.",
            envvar="DLPIPE_CONFIG",
        ),
    ] = None,
    config_json: Annotated[
        str | None,
        typer.Option(
            "--config-json",
            help="JSON mapping merged over the config, section by section (used by the workflow).",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help=f"One of {', '.join(LEVELS)}.")
    ] = "info",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    if log_level not in LEVELS:
        raise typer.BadParameter(
            f"{log_level!r} is not one of {', '.join(LEVELS)}", param_hint="'--log-level'"
        )
    state["config_path"] = config
    state["config_json"] = config_json
    state["log_level"] = log_level
    setup_logging(log_level)
    _announce(ctx.invoked_subcommand or "")


def _announce(command: str) -> None:
    """First log line of every command: what runs where (and under which SLURM job)."""
    import logging
    import os
    import socket

    job = os.environ.get("SLURM_JOB_ID")
    where = f"host {socket.gethostname()}" + (f", SLURM job {job}" if job else "")
    # Under SLURM the rule logs must show the job; elsewhere this is debug detail.
    level = logging.INFO if job else logging.DEBUG
    logging.getLogger("dlpipe").log(level, "dlpipe %s %s (%s)", __version__, command, where)


def load() -> dict[str, Any]:
    """The validated configuration of this invocation (``--config`` or the defaults)."""
    from dlpipe.config import load_config, merge_json

    config = load_config(state["config_path"])
    if state["config_json"]:
        config = merge_json(config, state["config_json"])
    return config
