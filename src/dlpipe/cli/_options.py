"""Typer options shared by the commands, each declared once.

Use them as ``name: Annotated[type, option(...)] = default``. An option that overrides a
config key says so in its help (``[config: train.seed]``); its command passes it to
:func:`dlpipe.config.apply_overrides`, where None means "not given".
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

__all__ = [
    "AllZ",
    "SetItems",
    "Strict",
    "ZRange",
    "comma_list",
    "config_option",
    "out_option",
    "overwrite_option",
]


def config_option(help: str, key: str, *names: str, metavar: str | None = None) -> Any:
    """An option overriding config key ``key`` when given (its default is None)."""
    return typer.Option(
        *names, help=f"{help} [config: {key}].", metavar=metavar, show_default=False
    )


def out_option(help: str) -> Any:
    """The required ``--out`` / ``-o`` option."""
    return typer.Option("--out", "-o", help=help, metavar="PATH")


def overwrite_option(help: str = "Replace OUT if it exists.") -> Any:
    """``--overwrite`` / ``--no-overwrite``."""
    return typer.Option(help=help)


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None (option not given) -> None."""
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


ZRange = Annotated[
    tuple[int, int] | None,
    typer.Option(
        "--z-range",
        help="Half-open z-range Z0 Z1 to evaluate (default: the test split, else everything).",
        metavar="Z0 Z1",
        show_default=False,
    ),
]
AllZ = Annotated[
    bool, typer.Option("--all", help="Evaluate every z-slice, ignoring the test split.")
]
SetItems = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="KEY=JSON override of a train.* key, e.g. --set lr=1e-4 (repeatable).",
        metavar="KEY=VALUE",
    ),
]
Strict = Annotated[
    bool | None,
    typer.Option(
        "--strict/--no-strict",
        help="Refuse an input volume with chunks absent from its store, instead of warning "
        "[config: train.strict, predict.strict].",
        show_default=False,
    ),
]
