"""MLflow tracking: one parent run per pipeline invocation, one child run per stage.

Public API
----------
tracking_uri
    The tracking URI in force for a config (``MLFLOW_TRACKING_URI`` wins).
check_tracking
    Check the tracking URI once at the start of a command (scheme; server answers).
init_store
    Create the store and the experiment (under a file lock: safe in parallel).
start_parent_run, end_parent_run
    The workflow-level run (Snakemake's ``onstart`` / ``onsuccess`` hooks).
stage_run
    Context manager giving a :class:`StageRun` for one stage; a no-op when tracking is off.
parent_run
    The workflow's parent run of this job (the summary logs its findings there).
where_runs_go
    The line every command prints first: where its run goes.
ui_hint
    The line the summary prints last: how to open the MLflow UI on model training.
dataset_name, lineage, run_name, family_params
    The run names and the tag vocabulary (``stage``, ``dataset``, ``model``, ``kind``).
log_model_folder, log_dataset
    A trained model as an MLflow logged (and registered) model; a store as a dataset input.
"""

from dlpipe.tracking.models import log_dataset, log_model_folder
from dlpipe.tracking.names import dataset_name, family_params, lineage, run_name
from dlpipe.tracking.runs import (
    PARENT_ENV,
    StageRun,
    end_parent_run,
    parent_run,
    stage_run,
    start_parent_run,
    ui_hint,
    where_runs_go,
)
from dlpipe.tracking.store import EXPERIMENT_KIND, check_tracking, init_store, tracking_uri

__all__ = [
    "EXPERIMENT_KIND",
    "PARENT_ENV",
    "StageRun",
    "check_tracking",
    "dataset_name",
    "end_parent_run",
    "family_params",
    "init_store",
    "lineage",
    "log_dataset",
    "log_model_folder",
    "parent_run",
    "run_name",
    "stage_run",
    "start_parent_run",
    "tracking_uri",
    "ui_hint",
    "where_runs_go",
]
