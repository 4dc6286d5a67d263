"""The Typer application and the options every subcommand shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from dlpipe import __version__
from dlpipe._logging import LEVELS, setup_logging
from dlpipe.config import apply_overrides, load_config, merge_json, validate_config
from dlpipe.results import StageResult
from dlpipe.stores.card import FAMILIES
from dlpipe.tracking import (
    StageRun,
    dataset_name,
    family_params,
    log_dataset,
    log_model_folder,
    parent_run,
    run_name,
    stage_run,
    ui_hint,
    where_runs_go,
)

PIPELINE = (
    "synth",
    "tile",
    "slices",
    "cvat",
    "import",
    "train",
    "predict",
    "postprocess",
    "baseline",
    "evaluate",
    "summary",
)
"""The commands in pipeline order, as ``dlpipe --help`` lists them."""


class _PipelineGroup(TyperGroup):
    """Lists the commands in :data:`PIPELINE` order (any other one last)."""

    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(PIPELINE)}
        return sorted(super().list_commands(ctx), key=lambda n: rank.get(n, len(rank)))


class ListArgumentCommand(TyperCommand):
    """A command whose variadic argument shows its element type (``<path>...``).

    Typer would show ``<list[Path]>``.
    """

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperArgument) and param.nargs == -1:
                args = get_args(param.type_descriptor.annotation)
                element = getattr(args[0], "__name__", "value").lower() if args else "value"
                param.display_type = lambda ctx, e=element: f"<{e}>..."  # type: ignore[method-assign]
        return params


app = typer.Typer(
    name="dlpipe",
    cls=_PipelineGroup,
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

state: dict[str, Any] = {
    "config_path": None,
    "config_json": None,
    "log_level": "info",
    "dataset": None,
    "model_name": None,
}


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
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="Dataset name for the MLflow run's name and `dataset` tag (default: from "
            "the input path: results/demo/volume.zarr -> demo, scan.zarr -> scan).",
            metavar="NAME",
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            "--model-name",
            help="Model name for the MLflow run's name and `model` tag, e.g. the sweep's "
            "(default: the model folder's name, or the baseline's method).",
            metavar="NAME",
        ),
    ] = None,
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
    state["dataset"] = dataset
    state["model_name"] = model_name
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
    config = load_config(state["config_path"])
    if state["config_json"]:
        config = merge_json(config, state["config_json"])
    return config


def configure(
    section: str, options: dict[str, Any], set_items: list[str] | None = None
) -> dict[str, Any]:
    """The configuration with the command's options (and ``--set`` items) over ``section``.

    See :func:`dlpipe.config.apply_overrides`; the result is validated again.
    """
    config = load()
    config[section] = apply_overrides(config[section], options, set_items, name=section)
    return validate_config(config, source="command line")


def run_stage(
    config: dict[str, Any],
    stage: str,
    call: Callable[[StageRun], StageResult],
    *,
    dataset: str | Path = "",
    model: str = "",
    kind: str = "",
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    inputs: Path | None = None,
    model_dir: Path | None = None,
) -> StageResult:
    """Run one stage: ``call(run)`` inside its tracking run; log and print what it returns.

    ``call`` calls the stage's library function (and gives it ``run`` only if the library
    logs while it works, as training does per epoch). The run is named
    ``<stage> <dataset>/<model>`` and tagged ``stage``, ``dataset``, ``model``, ``kind``
    (:mod:`dlpipe.tracking.names`): ``--dataset`` / ``--model-name`` win over ``dataset``
    (a name or the input path it is derived from) and ``model``. It logs ``params`` first
    (of a model family, only that family's), ``inputs`` as its dataset input; then the
    returned :class:`~dlpipe.results.StageResult`. A ``train`` stage logs the model of
    ``model_dir`` (registered under the dataset's name); a ``summary`` logs its result to
    the workflow's parent run too. The first line printed says where the run goes; the
    last is the result's summary.
    """
    dataset = state["dataset"] or dataset_name(dataset)
    model = state["model_name"] or model
    if kind in FAMILIES and params:
        params = family_params(params, kind)
    with stage_run(
        config, stage, dataset=dataset, model=model, kind=kind, params=params, tags=tags
    ) as run:
        if run.active:  # said once the store or server has answered
            typer.echo(where_runs_go(config, run_name(stage, dataset, model)), err=True)
        if inputs is not None:
            log_dataset(run, inputs, dataset, _CONTEXT.get(stage, stage))
        result = call(run)
        if kind in FAMILIES:  # what the library returns too (predict's maskrcnn.* section)
            result.params = family_params(result.params, kind)
        run.log_result(result)
        if model_dir is not None:
            log_model_folder(run, model_dir, result, dataset)
        if stage == "summary":
            parent_run(config).log_result(result)
            if run.active:  # where to look at the runs, opened on model training
                typer.echo(ui_hint(config, run.experiment_id()), err=True)
    if result.summary:
        typer.echo(result.summary)
    return result


def link_tags(source: dict[str, str]) -> dict[str, str]:
    """The tags linking a run to the run that trained its model (``train_run_id``)."""
    return {"train_run_id": source["train_run_id"]} if source.get("train_run_id") else {}


_CONTEXT = {"train": "training", "predict": "prediction", "evaluate": "evaluation"}
"""The role of a stage's dataset input (MLflow's ``mlflow.data.context`` tag)."""
