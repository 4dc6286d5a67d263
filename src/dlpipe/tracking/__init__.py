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
"""

from dlpipe.tracking.runs import (
    PARENT_ENV,
    StageRun,
    check_tracking,
    end_parent_run,
    init_store,
    stage_run,
    start_parent_run,
    tracking_uri,
)

__all__ = [
    "PARENT_ENV",
    "StageRun",
    "check_tracking",
    "end_parent_run",
    "init_store",
    "stage_run",
    "start_parent_run",
    "tracking_uri",
]
