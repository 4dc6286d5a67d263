"""Command-line interface: thin Typer commands over the library.

Each module here adds the commands of one pipeline area to :data:`app`; each command
parses its arguments and calls one library function.
"""

from __future__ import annotations

import logging
import sys

import typer
from typer.exceptions import Abort, TyperException

from dlpipe.cli import baselines as _baselines  # noqa: F401  (registers commands)
from dlpipe.cli import cvat as _cvat  # noqa: F401  (registers commands)
from dlpipe.cli import evaluate as _evaluate  # noqa: F401  (registers commands)
from dlpipe.cli import imports as _imports  # noqa: F401  (registers commands)
from dlpipe.cli import postprocess as _postprocess  # noqa: F401  (registers commands)
from dlpipe.cli import predict as _predict  # noqa: F401  (registers commands)
from dlpipe.cli import slices as _slices  # noqa: F401  (registers commands)
from dlpipe.cli import summary as _summary  # noqa: F401  (registers commands)
from dlpipe.cli import synth as _synth  # noqa: F401  (registers commands)
from dlpipe.cli import tile as _tile  # noqa: F401  (registers commands)
from dlpipe.cli import train as _train  # noqa: F401  (registers commands)
from dlpipe.cli._app import app, state
from dlpipe.errors import UserError
from dlpipe.stores.atomic import output_error

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dlpipe`` console script.

    A :class:`~dlpipe.errors.UserError` or a usage error prints one line and exits
    with code 2 (with the traceback only under ``--log-level debug``).
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "debug" in args and "--log-level" in args
    command = typer.main.get_command(app)
    try:
        rv = command.main(args, prog_name="dlpipe", standalone_mode=False)
    except UserError as exc:
        if debug or state["log_level"] == "debug":
            logging.getLogger("dlpipe").exception("user error")
        print(f"dlpipe: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Abort:
        print("dlpipe: aborted", file=sys.stderr)
        sys.exit(130)
    except TyperException as exc:  # usage errors: bad option, bad value, missing argument
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            sys.exit(0)
        name = ctx.command_path if ctx is not None else "dlpipe"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"{name}: error: {message}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("dlpipe: aborted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a full, read-only or forbidden location: the user's to fix
        err = output_error(exc, action="")
        if err is None:
            raise
        if debug or state["log_level"] == "debug":
            logging.getLogger("dlpipe").exception("system error")
        print(f"dlpipe: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
