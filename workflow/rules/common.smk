# Shared helpers and the MLflow parent run of each workflow invocation.
import json
import os
import shlex

from dlpipe.config import validate_config
from dlpipe.tracking import PARENT_ENV, end_parent_run, init_store, start_parent_run

# Snakemake's validate() fills top-level defaults only; complete nested ones too.
config.update(validate_config(config, source="config"))

RESULTS = config["results"]
LOGS = "logs"
BENCH = "benchmarks/out"


def cfg_arg(*sections):
    """`--config-json '...'` with the given config sections, for a rule's shell command.

    Put it in a rule's params so that changing those sections re-runs the rule.
    """
    payload = json.dumps({s: config[s] for s in ("results", "tracking", *sections)}, sort_keys=True)
    return f"--config-json {shlex.quote(payload)}"


def final_outputs():
    """What `snakemake` builds by default: grows with each stage."""
    segmentations = [f"unet/{config['predict']['model']}", "baselines/otsu", "baselines/rf"]
    return [
        f"{RESULTS}/demo/volume.zarr/.dlpipe_complete",
        f"{RESULTS}/demo/cvat.zarr/.dlpipe_complete",
        *(f"{RESULTS}/{s}/clean_metrics.json" for s in segmentations),
    ]


# One MLflow parent run per invocation; jobs find it in the environment. The store and
# experiment are created here, once, before any parallel job starts.


onstart:
    if config["tracking"]["enabled"] and not os.environ.get(PARENT_ENV):
        init_store(config)
        os.environ[PARENT_ENV] = start_parent_run(config, "snakemake") or ""


onsuccess:
    end_parent_run(config, os.environ.get(PARENT_ENV), "FINISHED")


onerror:
    end_parent_run(config, os.environ.get(PARENT_ENV), "FAILED")
